"""The workers' metrics folder (PROMETHEUS_MULTIPROC_DIR): one instance's, emptied at start, its space reserved.

The master prepares it before any worker starts: it takes the folder for its instance (a second instance
on the same folder would wipe the first one's counts, so it is refused), removes a previous run's
metrics files and nothing else, and removes at exit the folder it made when none was set. Each worker
reserves its files' space before prometheus_client maps them: a write into an unallocated page of a
mapped file on a full file system is a SIGBUS, which killed every worker as it booted.

A dead worker's counters and histograms are folded into one archive file per kind (retire()), so the
folder holds the live workers' files and two archives however many workers have died, and no count
ever goes down: a scrape reads the folder under a shared lock that the fold takes exclusively.

Importing this module imports no prometheus_client: that must wait until PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import struct
import sys
import tempfile
from collections.abc import Iterator

KINDS = ("counter", "histogram", "gauge_livemostrecent")  # prometheus_client's files for metrics.py's metrics
SUMMED = ("counter", "histogram")  # the kinds whose samples add up across processes
ARCHIVE = "archive"  # counter_archive.db: the summed samples of every dead worker
OURS = re.compile(rf"(?:{'|'.join(KINDS)})_(?:\d+|{ARCHIVE})\.db")
SCRAPE_LOCK = ".scrape.lock"
RESERVED_BYTES = 1 << 16  # prometheus_client's initial size, grown only when full: ours use under 4 KiB
DEFAULT_PREFIX = "sms-responder-metrics-"

_held: list[int] = []  # open folders whose flock marks them as this instance's
_made: list[str] = []  # folders prepare() made, removed at exit


def warn(message: str) -> None:
    """Tell the operator at start-up, on stderr like serve.py's other messages of the master."""
    print(f"responder: {message}", file=sys.stderr)


def prepare(chosen: str, temp_root: str) -> str:
    """Return the metrics folder (`chosen`, else a new one in temp_root), taken for this instance alone."""
    if not chosen:
        try:
            chosen = tempfile.mkdtemp(prefix=DEFAULT_PREFIX, dir=temp_root)
        except OSError as exc:
            warn(
                f"cannot make a metrics folder in {temp_root} ({exc.strerror}): set PROMETHEUS_MULTIPROC_DIR"
            )
            raise SystemExit(2) from None
        _made.append(chosen)
    try:
        os.makedirs(chosen, exist_ok=True)
    except OSError as exc:  # the workers will say their metrics are off; webhooks are answered all the same
        warn(f"cannot make the metrics folder PROMETHEUS_MULTIPROC_DIR={chosen} ({exc.strerror})")
        return chosen
    hold(chosen)
    remove_previous_files(chosen)
    return chosen


def hold(folder: str) -> None:
    """Lock the folder for this instance, or exit naming it if another instance has it."""
    # flock on the folder itself needs no file (a full or read-only folder can be locked too). The
    # workers inherit the lock with the descriptor: it lasts until the instance's last process exits.
    fd = -1
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        warn(
            f"PROMETHEUS_MULTIPROC_DIR={folder} is in use by another running instance, whose counts this "
            "one would wipe: give each instance its own folder (or leave the variable unset)"
        )
        raise SystemExit(2) from None
    except OSError as exc:  # a file system without locks, say: nothing can refuse a second instance
        if fd >= 0:
            os.close(fd)
        warn(f"cannot lock the metrics folder {folder} ({exc.strerror}); give no other instance the same one")
        return
    _held.append(fd)


def remove_previous_files(folder: str) -> None:
    """Remove a previous run's metrics files (a previous run's counts are not this run's); keep all others."""
    try:
        for name in os.listdir(folder):
            if OURS.fullmatch(name):
                os.unlink(os.path.join(folder, name))
    except OSError as exc:
        warn(f"cannot remove a previous run's metrics files from {folder} ({exc.strerror})")


def remove_if_ours(server=None) -> None:
    """gunicorn's on_exit: let go of the folder; remove it if prepare() made it (never one that was set)."""
    while _held:
        os.close(_held.pop())
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)


def reserve(folder: str, pid: int) -> str:
    """Allocate the disk space of a process's metrics files now; return why it could not ('' when it could)."""
    created = []
    try:
        for kind in KINDS:
            path = os.path.join(folder, f"{kind}_{pid}.db")
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                size = os.fstat(fd).st_size
                if size == 0:
                    created.append(path)
                os.posix_fallocate(fd, 0, max(size, RESERVED_BYTES))
            finally:
                os.close(fd)
    except OSError as exc:
        for path in created:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return exc.strerror or str(exc)
    return ""


@contextlib.contextmanager
def scrape_lock(folder: str, kind: int) -> Iterator[None]:
    """Hold the folder's scrape lock: shared while a scrape reads the files, exclusive while a fold changes them."""
    try:
        fd = os.open(os.path.join(folder, SCRAPE_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:  # a folder that cannot be written: nothing is folded in it either
        yield
        return
    try:
        fcntl.flock(fd, kind)
        yield
    finally:
        os.close(fd)


def retire(folder: str, pid: int) -> str:
    """Fold a dead worker's counters and histograms into the archive files, remove its files; return any problem."""
    from prometheus_client.mmap_dict import MmapedDict

    with scrape_lock(folder, fcntl.LOCK_EX):
        for kind in SUMMED:
            dead = os.path.join(folder, f"{kind}_{pid}.db")
            if not os.path.exists(dead):
                continue
            archive = os.path.join(folder, f"{kind}_{ARCHIVE}.db")
            totals: dict[str, float] = {}
            try:
                for path in (archive, dead):
                    if os.path.exists(path):
                        for key, value, _, _ in MmapedDict.read_all_values_from_file(path):
                            totals[key] = totals.get(key, 0.0) + value
                replace_archive(archive, totals)
                os.unlink(dead)
            except (OSError, RuntimeError) as exc:  # full, or a corrupt file: its counts stay where they are
                return f"cannot fold the exited worker {pid}'s {kind} metrics into {archive} ({exc})"
    return ""


def replace_archive(archive: str, totals: dict[str, float]) -> None:
    """Write `totals` in prometheus_client's file format (mmap_dict.py) and rename it over `archive`."""
    entries = []
    for key, value in totals.items():
        encoded = key.encode("utf-8")
        padded = encoded + b" " * (8 - (len(encoded) + 4) % 8)
        entries.append(struct.pack(f"i{len(padded)}sdd", len(encoded), padded, value, 0.0))
    body = b"".join(entries)
    # Written, not mapped: a full folder is an error here, never a SIGBUS in the master.
    fd, temporary = tempfile.mkstemp(prefix=".archive-", dir=os.path.dirname(archive))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("ii", 8 + len(body), 0) + body)
        os.replace(temporary, archive)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
