"""Memory under the pod's limit: cut slow bodies free theirs at once, and idle connections fit the limit.

Against `gunicorn -c gunicorn.conf.py` (what `make serve` runs) in a cgroup with deploy/kubernetes' memory
limit (256 MiB), no nginx in front.
"""

from __future__ import annotations

import re
import socket
import time
from contextlib import ExitStack, contextmanager, suppress

import pytest
from helpers import ALICE, SERVICE, IdleConnection, echoed, manifest_memory_limit, phone_at, rss_kib

import serve

pytestmark = pytest.mark.server

WAVES = 5
SLOW_CLIENTS = 400  # per wave
SENT_OF_BODY = 60_000  # bytes of a declared 65,536 (Flask's limit), then nothing more
IDLE_CONNECTIONS = 2_000
SLOW_BODY_HEAD = (
    b"POST /sms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 65536\r\n\r\n"
)


def workers_rss_mib(server) -> float:
    return sum(rss_kib(pid) for pid in server.pids()[1:]) / 1024


@contextmanager
def stalled_bodies(port: int):
    """Hold SLOW_CLIENTS bodies stalled part way; on leaving, wait until the server has cut every one."""
    with ExitStack() as stack:
        slow = []
        for _ in range(SLOW_CLIENTS):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=15))
            sock.sendall(SLOW_BODY_HEAD + b"x" * SENT_OF_BODY)
            slow.append(sock)
        yield
        for sock in slow:
            with suppress(ConnectionResetError):
                assert sock.recv(1) == b"", "a stalled body was answered instead of cut"


def test_waves_of_cut_slow_bodies_leave_no_memory_behind(memory_cgroup, production_server):
    group = memory_cgroup(manifest_memory_limit())
    server = production_server(group.prefix, WEB_CONCURRENCY="1")  # every wave meets the same worker
    phone = phone_at(server.port)
    after_wave = []
    for wave in range(WAVES):
        with stalled_bodies(server.port):
            assert phone.send("hello", f"+1500555{wave:04d}", SERVICE).text == echoed(1, "hello")  # meanwhile
        after_wave.append(workers_rss_mib(server))
    print(
        f"\nthe worker's RSS after each wave of {SLOW_CLIENTS} cut bodies:",
        ", ".join(f"{mib:.0f}" for mib in after_wave),
        f"MiB; {group.oom_kills()} OOM kills",
    )
    growth = after_wave[-1] - after_wave[0]
    # Each wave's buffers are freed as its requests are cut, so the next wave reuses that memory. Kept
    # until the garbage collector's next full pass, they grew it by 20 to 50 MiB a wave.
    assert growth < 20, f"the worker grew {growth:.0f} MiB over {WAVES - 1} waves: {after_wave}"
    assert group.oom_kills() == 0
    assert phone.send("hello", ALICE, SERVICE).text == echoed(1, "hello")


def test_every_worker_connection_fits_the_pods_memory_limit_at_its_measured_cost(
    memory_cgroup, production_server
):
    group = memory_cgroup(manifest_memory_limit())
    server = production_server(group.prefix, WEB_CONCURRENCY="2")
    started = re.search(r"(\d+) workers of ([\d,]+) connections", server.log_path.read_text())
    assert started, server.log_tail()
    workers, per_worker = int(started[1]), int(started[2].replace(",", ""))
    assert per_worker == serve.connections_per_worker(group.limit, workers)  # read from the cgroup
    phone = phone_at(server.port)
    for _ in range(20):  # warm up: the first webhooks import and cache what every later one needs
        assert phone.send("hello", ALICE, SERVICE).status == 200
    base = sum(rss_kib(pid) for pid in server.pids()) * 1024
    workers_before, charged_before = workers_rss_mib(server), group.usage()
    idle = [IdleConnection(server.port) for _ in range(IDLE_CONNECTIONS)]
    time.sleep(0.5)
    rss_cost = (workers_rss_mib(server) - workers_before) * 2**20 / IDLE_CONNECTIONS
    charged_cost = (group.usage() - charged_before) / IDLE_CONNECTIONS  # the kernel's socket memory too
    assert phone.send("hello", ALICE, SERVICE).status == 200
    for connection in idle:
        connection.socket.close()
    cost = max(rss_cost, charged_cost)
    needed = workers * per_worker * cost + base
    print(
        f"\n{IDLE_CONNECTIONS:,} idle connections: {rss_cost / 1024:.1f} KiB each in RSS, "
        f"{charged_cost / 1024:.1f} KiB charged to the cgroup; server at start {base / 2**20:.0f} MiB; "
        f"{workers} x {per_worker:,} connections need {needed / 2**20:.0f} MiB of {group.limit / 2**20:.0f} MiB"
    )
    assert 0 < cost < 64 * 1024, cost
    assert needed <= group.limit * 0.9, f"{workers} workers of {per_worker:,} connections do not fit"
    assert group.oom_kills() == 0
