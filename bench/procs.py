"""The bench's /proc readings: CPU of the machine, of this process and of a server's processes, and memory.

Starting, health-checking and stopping servers is devtools/servers.py's; run.py calls its stop_all() on
the way out (normal end, error, Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from devtools.servers import stat_fields

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class HarnessError(RuntimeError):
    """The benchmark itself went wrong (errors or wrong counts under load, ...): exit nonzero."""


def machine_busy_seconds() -> float:
    """Return the CPU seconds all cores have spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS  # guest time is already in user


def own_cpu_seconds() -> float:
    """Return the CPU seconds of this process and its reaped children (servers, wrk, growth child)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_seconds(pids: list[int]) -> float:
    """Return utime + stime (own and of reaped children) summed over the processes."""
    ticks = 0
    for pid in pids:
        try:
            fields = stat_fields(pid)
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


def worker_memory_kib(pids: list[int], key: str) -> int:
    """Return the largest VmRSS/VmHWM among a server's workers (pids: the main process first)."""
    return max(memory_kib(pid, key) for pid in pids[1:] or pids)
