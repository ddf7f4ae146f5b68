"""The service's log lines: JSON in production, key=value text in development; no value can forge a line.

Lines go to stderr without ever blocking: when nobody reads it (a stuck log collector fills the pipe),
up to MAX_PENDING_BYTES wait in memory and later lines are dropped and counted, never a webhook or a
signal held up. Once the pipe drains, one line says how many were dropped.
"""

from __future__ import annotations

import _socket
import array
import contextlib
import fcntl
import json
import logging
import os
import re
import stat
import termios
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("responder")
# Per process, about 100 webhook lines wait for a blocked stderr; later ones are dropped and counted.
MAX_PENDING_BYTES = 16 * 1024
RETRY_SECONDS = 0.2  # how often a process with lines waiting tries stderr again
PIPE_BUF = 4096  # Linux: a pipe write of at most this many bytes is never split
PLAIN = re.compile(r"[\w.:/@+*-]*")  # a text value made only of these is written as it is; others are quoted


class JsonFormatter(logging.Formatter):
    """Format records as one JSON object per line, with the webhook's fields when present."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(record.created, 3), "level": record.levelname.lower(), "msg": record.getMessage()}
        line.update(getattr(record, "webhook", {}))
        return json.dumps(line, separators=(",", ":"))


def text_value(value: object) -> str:
    """Write a value for a text line: plain words as they are, anything else quoted and escaped."""
    text = str(value)
    return text if PLAIN.fullmatch(text) and text.isascii() else json.dumps(text)


class TextFormatter(logging.Formatter):
    """Format records as readable `key=value` lines for development."""

    def format(self, record: logging.LogRecord) -> str:
        message = json.dumps(record.getMessage())[1:-1]  # control characters escaped, quotes kept readable
        fields = " ".join(f"{k}={text_value(v)}" for k, v in getattr(record, "webhook", {}).items())
        return f"{record.levelname} {message} {fields}".rstrip()


class StderrWriter:
    """A process's non-blocking writer of log lines to file descriptor 2, with a bounded backlog."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)  # a child's backlog is its parent's to write
        self.on_drop: Callable[[int], None] = lambda lines: None  # counts dropped lines (metrics.py sets it)
        self.note_format: Callable[[logging.LogRecord], str] = logging.Formatter().format

    def reset(self) -> None:
        """Start with no backlog and no retrying thread (a forked child has neither)."""
        self.lock = threading.RLock()
        self.busy = False  # a line logged from a signal handler while this thread writes is only queued
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.dropped = 0  # lines dropped since the last "dropped" line
        self.uncounted = 0  # lines dropped and not yet given to on_drop
        self.retrying = False
        self.target: tuple[int, int] | None = None  # (device, inode) of what fd 2 was when opened
        self.write: Callable[[bytes], int] = lambda data: os.write(2, data)

    def open(self) -> None:
        """Choose how to write to whatever fd 2 is now, without changing its flags for anyone else."""
        try:
            info = os.fstat(2)
        except OSError:
            return
        target = (info.st_dev, info.st_ino)
        if target == self.target:
            return
        self.target = target
        self.write = lambda data: os.write(2, data)  # a regular file never blocks
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(info.st_mode):  # journald's stream: each send says not to wait
                sock = _socket.socket(fileno=os.dup(2))  # _socket: gevent's patched socket would wait
                self.write = lambda data: sock.send(data, _socket.MSG_DONTWAIT)
            elif not stat.S_ISREG(info.st_mode):  # a pipe or terminal: a new open file of our own
                if stat.S_ISFIFO(info.st_mode):
                    self.write = write_if_room  # another user's pipe (a container's) cannot be opened again
                fd = os.open("/proc/self/fd/2", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                self.write = lambda data: os.write(fd, data)

    def write_line(self, line: bytes) -> None:
        """Write a line now, or queue it behind the backlog, or drop and count it when the backlog is full."""
        with self.lock:
            if self.busy:  # logged from a signal handler that interrupted this thread's write
                self.queue(line)
                return
            self.busy = True
            try:
                self.open()
                self.queue(line)
                self.flush()
            finally:
                self.busy = False
            if self.uncounted:  # counted here, never from a signal handler inside a metrics update
                lines, self.uncounted = self.uncounted, 0
                with contextlib.suppress(Exception):  # a metrics problem must not stop logging
                    self.on_drop(lines)
            if self.pending and not self.retrying:
                self.retrying = True
                threading.Thread(target=self.retry, name="stderr-retry", daemon=True).start()

    def queue(self, line: bytes) -> None:
        if self.pending_bytes + len(line) > MAX_PENDING_BYTES:
            self.dropped += 1
            self.uncounted += 1
            return
        self.pending.append(line)
        self.pending_bytes += len(line)

    def flush(self) -> None:
        """Write the backlog until stderr would block; once it is empty, say how many lines were dropped."""
        while True:
            while self.pending:
                line = self.pending[0]
                try:
                    written = self.write(line)
                except OSError:  # EAGAIN: full; EPIPE: nobody reads. Either way, later.
                    return
                self.pending_bytes -= written
                if written < len(line):
                    self.pending[0] = line[written:]  # the rest is written next, or waits if it is full
                    continue
                self.pending.popleft()
            if not self.dropped:
                return
            note = logging.LogRecord(
                log.name, logging.WARNING, __file__, 0, "%d log lines dropped while stderr was blocked",
                (self.dropped,), None,
            )  # fmt: skip
            self.dropped = 0
            line = (self.note_format(note) + "\n").encode("utf-8", "backslashreplace")
            self.pending.append(line)
            self.pending_bytes += len(line)

    def retry(self) -> None:
        """Try stderr again every RETRY_SECONDS until the backlog is written (a greenlet in a gevent worker)."""
        while True:
            time.sleep(RETRY_SECONDS)
            with self.lock:
                if self.busy:
                    continue
                self.busy = True
                try:
                    self.flush()
                finally:
                    self.busy = False
                if not self.pending:
                    self.retrying = False
                    return


def write_if_room(data: bytes) -> int:
    """Write to the pipe on fd 2 what surely fits now: a whole line (or PIPE_BUF of a longer one), else raise."""
    unread = array.array("i", [0])
    fcntl.ioctl(2, termios.FIONREAD, unread)
    # A pipe holds its bytes in pages: with a page of margin, a write this size finds a page with room.
    room = fcntl.fcntl(2, fcntl.F_GETPIPE_SZ) - unread[0] - PIPE_BUF
    size = min(len(data), PIPE_BUF)
    if room < size:
        raise BlockingIOError
    return os.write(2, data[:size])


STDERR = StderrWriter()


class StderrHandler(logging.Handler):
    """A logging handler writing to stderr through STDERR: never blocks, drops and counts what cannot wait."""

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        super().setFormatter(fmt)
        if fmt is not None:
            STDERR.note_format = fmt.format  # the "dropped" line in the format of the process's lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:
            self.handleError(record)
            return
        STDERR.write_line(line)


def configure_logging(production: bool) -> None:
    """Send the service's logs to stderr: JSON lines in production, readable text in development."""
    if log.handlers:
        return
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if production else TextFormatter())
    if production:
        # The logging HOWTO's "Optimization": skip what no line prints (thread names, multiprocessing).
        # The process id stays: gunicorn's error log prints it, and a record without it cannot be formatted.
        logging.logThreads = logging.logMultiprocessing = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = True
