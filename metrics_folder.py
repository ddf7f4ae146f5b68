"""The workers' metrics folder (PROMETHEUS_MULTIPROC_DIR): one instance's, emptied at start, its space reserved.

The master prepares it before any worker starts: it takes the folder for its instance (a second instance
on the same folder would wipe the first one's counts, so it is refused), removes a previous run's
metrics files and nothing else, and removes at exit the folder it made when none was set. Each worker
reserves its files' space before prometheus_client maps them: a write into an unallocated page of a
mapped file on a full file system is a SIGBUS, which killed every worker as it booted.

Importing this module imports no prometheus_client: that must wait until PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sys
import tempfile

KINDS = ("counter", "histogram", "gauge_livemostrecent")  # prometheus_client's files for metrics.py's metrics
OURS = re.compile(rf"(?:{'|'.join(KINDS)})_\d+\.db")
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
