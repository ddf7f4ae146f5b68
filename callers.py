"""The caller directory: E.164 number -> display name, read from a `number,name` CSV."""

from __future__ import annotations

import csv
import logging
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers

MAX_NAME_CHARS = 100
RECHECK_SECONDS = 5.0

log = logging.getLogger("responder")


class DirectoryError(ValueError):
    """A caller directory that cannot be loaded; the message names file and line."""


@dataclass(frozen=True)
class Directory:
    """Names by E.164 number, plus what loading had to say about duplicates."""

    names: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def name_for(self, number: str, default: str) -> str:
        """Return the name for an E.164 number, or `default`."""
        return self.names.get(number, default)

    def __len__(self) -> int:
        return len(self.names)


def to_e164(number: str, region: str) -> str:
    """Normalise a phone number written in any common format to E.164."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number ({exc})") from None  # the number itself stays out of logs
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("the number has the wrong number of digits for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def parse_directory(lines: list[str], source: str, region: str) -> Directory:
    """Parse CSV lines (header `number,name`) into a Directory; raise DirectoryError on a bad row."""
    reader = csv.reader(lines)
    try:
        return _read_rows(reader, source, region)
    except csv.Error as exc:
        raise DirectoryError(f"{source}:{reader.line_num}: not valid CSV ({exc})") from None


def _read_rows(reader, source: str, region: str) -> Directory:
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != ["number", "name"]:
        raise DirectoryError(f"{source}:1: the first line must be the header 'number,name'")
    names: dict[str, str] = {}
    first_line: dict[str, int] = {}
    warnings: list[str] = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise DirectoryError(f"{source}:{line}: expected 2 columns (number,name), got {len(row)}")
        raw_number, name = row[0].strip(), row[1].strip()
        if not name:
            raise DirectoryError(f"{source}:{line}: the name is empty")
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
            raise DirectoryError(f"{source}:{line}: the name contains control characters")
        if len(name) > MAX_NAME_CHARS:
            raise DirectoryError(f"{source}:{line}: the name is longer than {MAX_NAME_CHARS} characters")
        try:
            number = to_e164(raw_number, region)
        except ValueError as exc:
            raise DirectoryError(f"{source}:{line}: {exc}") from None
        if number in names:
            warnings.append(
                f"{source}:{line}: duplicate of line {first_line[number]} ({number[:-4]}****); "
                "keeping the first"
            )
            continue
        names[number] = name
        first_line[number] = line
    return Directory(names, tuple(warnings))


def load_directory(path: str | Path, region: str) -> Directory:
    """Read the caller directory CSV at `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DirectoryError(f"{path}: cannot read the caller directory ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise DirectoryError(f"{path}: the caller directory is not UTF-8 text") from None
    return parse_directory(text.splitlines(), str(path), region)


class WatchedDirectory:
    """The caller directory, reloaded when its file changes; a bad reload keeps the old one."""

    def __init__(
        self, path: str, region: str, directory: Directory, on_load: Callable[[int, bool], None] | None = None
    ):
        self.path, self.region, self.directory = path, region, directory
        self.on_load = on_load or (lambda entries, failed: None)  # told (entries, failed) after each load
        self.on_load(len(directory), False)
        self.problem = ""
        self.checked_at = time.time()
        self.mtime = Path(path).stat().st_mtime if path else None
        for warning in directory.warnings:
            log.warning("caller directory: %s", warning)

    def current(self) -> Directory:
        """Return the directory, re-reading its file when it changed (checked every few seconds)."""
        now = time.time()
        if self.path and now - self.checked_at >= RECHECK_SECONDS:
            self.checked_at = now
            self.reload_if_changed()
        return self.directory

    def reload_if_changed(self) -> None:
        try:
            mtime = Path(self.path).stat().st_mtime
            if mtime == self.mtime:
                return
            self.directory = load_directory(self.path, self.region)
            self.mtime, self.problem = mtime, ""
            self.on_load(len(self.directory), False)
        except (OSError, DirectoryError) as exc:
            self.problem = str(exc)
            log.warning("caller directory not reloaded, keeping the previous one: %s", exc)
            self.on_load(len(self.directory), True)
