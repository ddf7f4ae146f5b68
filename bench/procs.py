"""Processes: start a server and time it to its first answer, read its CPU and memory, stop everything.

Each server starts in its own session, so its process group is exactly the server: the main process
(granian's or gunicorn's master) and its workers. Every process started here is registered and stopped
again by `stop_all()`, which run.py calls on the way out (normal end, error, Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 25.0  # granian's workers_kill_timeout is 20 s

_started: list[subprocess.Popen] = []


class HarnessError(RuntimeError):
    """The benchmark itself went wrong (a server did not start, answered errors, ...): exit nonzero."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def popen(command: list[str], **kwargs) -> subprocess.Popen:
    """Start a process in its own session and remember it for stop_all()."""
    process = subprocess.Popen(command, start_new_session=True, **kwargs)
    _started.append(process)
    return process


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a process started by popen() and everything in its process group."""
    if process.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(process.pid, sig)
            process.wait(STOP_TIMEOUT)
    for pid in group_members(process.pid):  # stragglers: workers that outlived their master
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if process.poll() is None:
        process.kill()
        process.wait()
    if process in _started:
        _started.remove(process)


def stop_all() -> None:
    for process in list(_started):
        stop(process)


# ---- /proc ----------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """Return /proc/<pid>/stat's fields after the command name (field 3 onwards)."""
    data = Path(f"/proc/{pid}/stat").read_text()
    return data[data.rindex(")") + 2 :].split()


def machine_busy_seconds() -> float:
    """Return the CPU seconds all cores have spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS  # guest time is already in user


def own_cpu_seconds() -> float:
    """Return the CPU seconds of this process and its reaped children (servers, wrk, growth child)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def group_members(pgid: int) -> list[int]:
    """Return the live processes of a process group (the root first)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
        except (OSError, ValueError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return sorted(members, key=lambda pid: pid != pgid)


def cpu_seconds(pids: list[int]) -> float:
    """Return utime + stime (own and of reaped children) summed over the processes."""
    ticks = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / CLOCK_TICKS


def memory_kib(pid: int, key: str) -> int:
    """Return a Vm* line of /proc/<pid>/status in KiB (VmRSS: now, VmHWM: peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise HarnessError(f"/proc/{pid}/status has no {key}")


# ---- servers --------------------------------------------------------------------------------


@dataclass
class Server:
    """One server process tree listening on 127.0.0.1:port."""

    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    cwd: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> float:
        """Start the server; return the seconds from spawning it to its first 200 on GET /healthz."""
        with self.log_path.open("wb") as log:
            started = time.perf_counter()
            self.process = popen(self.command, env=self.env, cwd=self.cwd, stdout=log, stderr=log)
        deadline = started + STARTUP_TIMEOUT
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"{self.command[:3]} exited at start-up:\n{self.log_tail()}")
            if self.get("/healthz", timeout=2.0) == 200:
                return time.perf_counter() - started
            time.sleep(0.005)
        raise HarnessError(
            f"{self.command[:3]} did not answer within {STARTUP_TIMEOUT} s:\n{self.log_tail()}"
        )

    def get(self, path: str, timeout: float) -> int | None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status
        except OSError:
            return None
        finally:
            connection.close()

    def pids(self) -> list[int]:
        """The main process first, then the workers."""
        assert self.process is not None
        return group_members(self.process.pid)

    def workers(self) -> list[int]:
        return self.pids()[1:] or self.pids()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids())

    def worker_memory_kib(self, key: str) -> int:
        """Return the largest VmRSS/VmHWM among the workers."""
        return max(memory_kib(pid, key) for pid in self.workers())

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
