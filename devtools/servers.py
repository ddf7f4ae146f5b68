"""Server processes on 127.0.0.1 for tests and the bench: start one, wait for GET /healthz, stop it.

Every process starts in its own session, so its process group is exactly what it started (a server's
master and its workers): stopping it stops the whole group. Everything popen() starts is stopped again
by stop_all().
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 25.0  # the production server's graceful_timeout is 20 s

_started: list[subprocess.Popen] = []


class ServerError(RuntimeError):
    """A server exited or stayed silent at start-up."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(port: int, path: str, host: str = "127.0.0.1", timeout: float = 2.0) -> int:
    """GET 127.0.0.1:port/path with this Host header; return the status (OSError when nothing answers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def wait_until(condition, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def popen(command: list[str], **kwargs) -> subprocess.Popen:
    """Start a process in its own session and remember it for stop_all()."""
    process = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL, **kwargs)
    _started.append(process)
    return process


def reap(process: subprocess.Popen, grace: float) -> int | None:
    """Wait `grace` s for an exit, then SIGKILL the rest of the group; return the exit code (None: killed)."""
    try:
        code = process.wait(grace)
    except subprocess.TimeoutExpired:
        code = None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if process in _started:
        _started.remove(process)
    return code


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = STOP_TIMEOUT) -> int | None:
    """Send `sig` to the process (a server's master stops its own workers), then reap(grace)."""
    if process.poll() is None:
        process.send_signal(sig)
    return reap(process, grace)


def stop_all() -> None:
    """Stop every process popen() started that is not stopped yet."""
    for process in list(_started):
        stop(process)


def stat_fields(pid: int) -> list[str]:
    """Return /proc/<pid>/stat's fields after the command name (field 3 onwards)."""
    data = Path(f"/proc/{pid}/stat").read_text()
    return data[data.rindex(")") + 2 :].split()


def group_members(pgid: int) -> list[int]:
    """Return the live processes of a process group (the root first)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = stat_fields(int(entry.name))
        except (OSError, ValueError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return sorted(members, key=lambda pid: pid != pgid)


def tail(path: Path, lines: int = 40) -> str:
    """Return a text file's last lines, or "(no file)"."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no file)"
    return "\n".join(text.splitlines()[-lines:])


class Deadline:
    """A time budget: every wait takes what is left of it."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """Return the seconds left, never below zero."""
        return max(0.0, self.end - time.monotonic())


@dataclass
class Server:
    """One server process tree listening on 127.0.0.1:port, its output in log_path."""

    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    cwd: Path
    host: str = "127.0.0.1"  # the Host header of the health check
    process: subprocess.Popen | None = field(default=None, repr=False)
    spawned_at: float = field(default=0.0, repr=False)

    def start(self, timeout: float = STARTUP_TIMEOUT) -> float:
        """Spawn the server and wait for it; return the seconds from spawning to its first 200 on /healthz."""
        self.spawn()
        return self.wait_healthy(timeout)

    def spawn(self) -> None:
        """Start the process and return at once."""
        with self.log_path.open("wb") as log:
            self.spawned_at = time.perf_counter()
            self.process = popen(self.command, env=self.env, cwd=self.cwd, stdout=log, stderr=log)

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT) -> float:
        """Wait for a 200 on GET /healthz; return the seconds since spawn()."""
        assert self.process is not None, "spawn() first"
        deadline = time.perf_counter() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServerError(f"{self.command[:3]} exited at start-up:\n{self.log_tail()}")
            if self.get("/healthz", timeout=2.0) == 200:
                return time.perf_counter() - self.spawned_at
            if time.perf_counter() >= deadline:
                raise ServerError(
                    f"{self.command[:3]} did not answer within {timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.005)

    def get(self, path: str, timeout: float = 2.0) -> int | None:
        """Return the status of GET path, or None when nothing answers."""
        try:
            return http_status(self.port, path, self.host, timeout)
        except OSError:
            return None

    def is_running(self) -> bool:
        """Return whether the main process is still running."""
        return self.process is not None and self.process.poll() is None

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the main process and return at once."""
        if self.is_running():
            self.process.send_signal(sig)

    def wait_stopped(self, grace: float = STOP_TIMEOUT) -> int | None:
        """Wait for the exit, killing the group after `grace` seconds; return the exit code (None: killed)."""
        return reap(self.process, grace) if self.process else None

    def stop(self, sig: int = signal.SIGTERM, grace: float = STOP_TIMEOUT) -> int | None:
        """Send `sig`, then wait_stopped(grace)."""
        self.send_signal(sig)
        return self.wait_stopped(grace)

    def kill(self) -> None:
        """SIGKILL the whole group at once, as when its machine dies."""
        self.wait_stopped(grace=0)

    def pids(self) -> list[int]:
        """Return the main process first, then the workers."""
        assert self.process is not None
        return group_members(self.process.pid)

    def log_tail(self, lines: int = 15) -> str:
        """Return the log's last lines, indented."""
        return "\n".join("    " + line for line in tail(self.log_path, lines).splitlines())


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], cwd: Path, log_path: Path, port: int
) -> Iterator[Server]:
    """Start a server, yield it once it answers /healthz, stop it afterwards."""
    server = Server(command, env, port, log_path, cwd)
    try:
        server.start()
        yield server
    finally:
        server.stop()
