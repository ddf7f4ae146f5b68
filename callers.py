"""The caller directory: E.164 number -> display name, read from a `number,name` CSV.

A running instance keeps serving its last good directory through a bad edit: reloads keep the previous
one, and a worker that boots meanwhile starts from the last good copy (LastGood) another load left.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import stat
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import phonenumbers

MAX_NAME_CHARS = 100
MAX_REPORTED_ROWS = 10  # bad rows listed one by one; the rest are counted
RECHECK_SECONDS = 5.0
SETTLE_SECONDS = 1.0  # a file modified more recently than this is still being written: read it later
# A file this small (~600 rows, ~15 ms to parse) is reloaded by the request that notices the change;
# a larger one in a background thread (a greenlet under gevent), so that no webhook waits for it.
INLINE_RELOAD_BYTES = 16 * 1024
YIELD_EVERY_ROWS = 256  # the parse lets other greenlets run this often (~6 ms of work)
LAST_GOOD_NAME = "caller-directory.last-good.json"
# Far above any real directory, low enough that two workers reloading the largest one at once stay inside
# a 256 MiB pod: memory follows the rows (about 300 bytes each, twice that while a reload replaces them),
# the bytes bound the text kept for the last good copy. A bigger file is refused from its size, unread.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_ROWS = 100_000

log = logging.getLogger("responder")


class Stamp(NamedTuple):
    """Which version of a file: a rewrite changes the size or the time, a rename the inode."""

    device: int
    inode: int
    size: int
    mtime_ns: int


class DirectoryError(ValueError):
    """A caller directory that cannot be loaded: one problem per bad row, each naming file and line."""

    def __init__(self, problems: list[str], stamp: Stamp | None = None):
        super().__init__("; ".join(problems))
        self.problems = problems
        self.stamp = stamp  # the version of the file that was refused (None: unreadable)


class FileChanging(DirectoryError):
    """A file that changed while it was read: written in place right now; read it again later."""


@dataclass(frozen=True)
class Directory:
    """Names by E.164 number, plus what loading had to say: duplicates, and why a last good copy serves."""

    names: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    stamp: Stamp | None = None  # the file version these names come from (or that was refused)
    problem: str = ""  # why these are the last good copy's names instead of the file's ('' if not)
    text: str = field(default="", repr=False, compare=False)  # what was parsed, for the last good copy

    def name_for(self, number: str, default: str) -> str:
        """Return the name for an E.164 number, or `default`."""
        return self.names.get(number, default)

    def __len__(self) -> int:
        return len(self.names)


PARSE_PROBLEMS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "an unknown country code, or none and no region to assume",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "it must be digits, with spaces, dots, dashes, brackets or a leading +",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too few digits after the international prefix",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too few digits",
    phonenumbers.NumberParseException.TOO_LONG: "too many digits",
}


def to_e164(number: str, region: str) -> str:
    """Normalise a phone number written in any common format to E.164."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:  # its own text numbers its codes: say it in ours
        raise ValueError(f"not a phone number ({PARSE_PROBLEMS.get(exc.error_type, 'unreadable')})") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("the number has the wrong number of digits for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def parse_directory(lines: Iterable[str], source: str, region: str) -> Directory:
    """Parse CSV lines (header `number,name`) into a Directory; raise DirectoryError listing every bad row."""
    reader = csv.reader(lines)
    names: dict[str, str] = {}
    first_line: dict[str, int] = {}
    warnings: list[str] = []
    problems: list[str] = []
    try:
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header] != ["number", "name"]:
            raise DirectoryError([f"{source}:1: the first line must be the header 'number,name'"])
        for count, row in enumerate(reader, 1):
            if count > MAX_ROWS:
                raise DirectoryError(
                    [f"{source}: more than {MAX_ROWS:,} rows, over the caller directory's limit"]
                )
            if count % YIELD_EVERY_ROWS == 0:
                time.sleep(
                    0.0001
                )  # under gevent: other greenlets and the I/O loop run (sleep(0) skips the loop)
            line = reader.line_num
            try:
                number, name = _read_row(row, region)
            except ValueError as exc:
                problems.append(f"{source}:{line}: {exc}")
                continue
            if not number:
                continue
            if number in names:
                warnings.append(
                    f"{source}:{line}: duplicate of line {first_line[number]} ({number[:-4]}****); "
                    "keeping the first"
                )
                continue
            names[number] = name
            first_line[number] = line
    except csv.Error as exc:  # the rest of the file cannot be split into rows
        problems.append(f"{source}:{reader.line_num}: not valid CSV ({exc})")
    if problems:
        more = len(problems) - MAX_REPORTED_ROWS
        raise DirectoryError(
            problems[:MAX_REPORTED_ROWS] + ([f"{source}: {more} more bad rows"] if more > 0 else [])
        )
    return Directory(names, tuple(warnings))


def _read_row(row: list[str], region: str) -> tuple[str, str]:
    """Return a row's (E.164 number, name), ('', '') for a blank row; raise ValueError saying what is wrong."""
    if not any(cell.strip() for cell in row):
        return "", ""
    if len(row) != 2:
        raise ValueError(f"expected 2 columns (number,name), got {len(row)}")
    raw_number, name = row[0].strip(), row[1].strip()
    if not name:
        raise ValueError("the name is empty")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise ValueError("the name contains control characters")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"the name is longer than {MAX_NAME_CHARS} characters")
    return to_e164(raw_number, region), name


def stamp_of(info: os.stat_result) -> Stamp:
    return Stamp(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def file_stamp(path: str | Path) -> Stamp | None:
    """Return which version of the file is at `path` now (None: there is none to read)."""
    try:
        return stamp_of(os.stat(path))
    except OSError:
        return None


def open_regular_file(path: str | Path) -> tuple[io.BufferedReader, Stamp]:
    """Open the directory file without ever blocking; raise DirectoryError for anything but a small regular file."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise DirectoryError([f"{path}: cannot read the caller directory ({exc.strerror})"]) from None
    refuse_unless_small_and_regular(path, info)
    try:
        # O_NONBLOCK: a FIFO put there after the stat opens at once instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise DirectoryError(
            [f"{path}: cannot read the caller directory ({exc.strerror})"], stamp_of(info)
        ) from None
    try:
        info = os.fstat(fd)
        refuse_unless_small_and_regular(path, info)  # the file opened may not be the one that was checked
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), stamp_of(info)


def refuse_unless_small_and_regular(path: str | Path, info: os.stat_result) -> None:
    """Raise DirectoryError for a FIFO, device or folder (a read could wait forever) or a file over the limit."""
    if not stat.S_ISREG(info.st_mode):
        raise DirectoryError(
            [f"{path}: not a regular file (a FIFO, device or folder); CALLERS_FILE must name a CSV file"],
            stamp_of(info),
        )
    if info.st_size > MAX_FILE_BYTES:
        raise DirectoryError(
            [
                f"{path}: {info.st_size / 2**20:.1f} MiB, over the caller directory's limit of "
                f"{MAX_FILE_BYTES // 2**20} MiB"
            ],
            stamp_of(info),
        )


def load_directory(path: str | Path, region: str) -> Directory:
    """Read the caller directory CSV at `path` as a stream; raise FileChanging if it changed while being read."""
    binary, before = open_regular_file(path)
    problem: DirectoryError | None = None
    with io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as f:
        try:
            directory = parse_directory(f, str(path), region)
            f.seek(0)
            text = f.read()  # for the last good copy: at most MAX_FILE_BYTES
        except DirectoryError as exc:
            problem = exc
        except UnicodeDecodeError:
            problem = DirectoryError([f"{path}: the caller directory is not UTF-8 text"])
        except OSError as exc:
            problem = DirectoryError([f"{path}: cannot read the caller directory ({exc.strerror})"])
    if file_stamp(path) != before:  # size, time or the file itself changed under the read: not its fault
        raise FileChanging([f"{path}: the file changed while it was read (written in place?)"])
    if problem:
        problem.stamp = before
        raise problem
    return replace(directory, stamp=before, text=text)


class LastGood:
    """A private copy of the last directory that loaded, for a worker that boots while the file is bad."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def default(cls, instance_path: str | Path) -> LastGood:
        """Keep the copy in the server's metrics folder (one per server run), else in the instance folder."""
        return cls(Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or instance_path) / LAST_GOOD_NAME)

    def save(self, source: str, directory: Directory) -> None:
        """Replace the copy by renaming a complete new one over it; a failure only logs a warning."""
        record = {"source": os.path.abspath(source), "text": directory.text}  # the text: ~10 ms per 100k rows
        temporary = None
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".caller-directory-", dir=self.path.parent)  # mode 0600
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f, ensure_ascii=False)
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("caller directory: no last good copy kept at %s (%s)", self.path, exc.strerror or exc)
            if temporary:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    def load(self, source: str, region: str) -> Directory | None:
        """Return the directory last loaded from `source`, parsed for `region` (None when there is none)."""
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
            if record["source"] == os.path.abspath(source):
                return parse_directory(record["text"].splitlines(), source, region)  # never saved again
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # none, or not one of ours
            pass
        return None


class WatchedDirectory:
    """The caller directory, reloaded when its file changes; a bad reload keeps the old one."""

    def __init__(
        self,
        path: str,
        region: str,
        directory: Directory,
        on_load: Callable[[int, bool], None] | None = None,
        last_good: LastGood | None = None,
    ):
        self.path, self.region, self.directory, self.last_good = path, region, directory, last_good
        self.on_load = on_load or (lambda entries, failed: None)  # told (entries, failed) after each load
        self.problem = directory.problem  # why the file's current version is not in use ('' if it is)
        self.on_load(len(directory), bool(self.problem))
        self.stamp = directory.stamp
        self.checked_at = time.monotonic()  # a step of the wall clock never delays a check
        self.reloading = threading.Lock()
        self.thread: threading.Thread | None = None  # the last background reload
        for warning in directory.warnings:
            log.warning("caller directory: %s", warning)

    def current(self) -> Directory:
        """Return the directory, re-reading its file when it changed (checked every few seconds)."""
        now = time.monotonic()
        if self.path and now - self.checked_at >= RECHECK_SECONDS:
            self.checked_at = now
            self.check()
        return self.directory

    def check(self) -> None:
        """Reload a changed file: a small one now, a large one in the background; one reload at a time."""
        stamp = file_stamp(self.path)
        if stamp == self.stamp or (stamp and 0 <= time.time() - stamp.mtime_ns / 1e9 < SETTLE_SECONDS):
            return  # unchanged, or written in place right now: the next check looks again
        if not self.reloading.acquire(blocking=False):
            return
        if stamp is not None and stamp.size > INLINE_RELOAD_BYTES:
            self.thread = threading.Thread(target=self.reload, name="caller-directory", daemon=True)
            self.thread.start()
        else:
            self.reload()

    def reload(self) -> None:
        """Read the file again: use it if it loads, else keep the previous directory and say why."""
        try:
            directory = load_directory(self.path, self.region)
        except FileChanging as exc:  # its version is not recorded: the next check reads it again
            log.info("caller directory: %s; reading it again in %.0f s", exc, RECHECK_SECONDS)
        except DirectoryError as exc:
            self.stamp, self.problem = exc.stamp, str(exc)
            log.warning("caller directory not reloaded, keeping the previous one: %s", exc)
            self.on_load(len(self.directory), True)
        else:
            self.directory, self.stamp, self.problem = directory, directory.stamp, ""
            self.on_load(len(directory), False)
            for warning in directory.warnings:
                log.warning("caller directory: %s", warning)
            if self.last_good:
                self.last_good.save(self.path, directory)
        finally:
            self.reloading.release()
