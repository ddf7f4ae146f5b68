"""The production server writing to a stderr nobody reads: log lines are dropped and counted, never webhooks.

Before, after about 64 KiB of log (some 400 webhooks) the master and every worker blocked in a write to
the pipe: every webhook and /healthz timed out, no worker was ever timed out (the master itself blocked
writing "WORKER TIMEOUT") and SIGTERM waited until the pipe drained.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import REPO, SERVICE, TOKEN, production_settings
from prometheus_client.parser import text_string_to_metric_families

from devtools.servers import free_port, group_members, http_status, popen, reap, wait_until
from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server

TIMEOUT = 4  # gunicorn's worker timeout for this test (gunicorn.conf.py: 30 s)
WEBHOOKS = 1000  # each logs a line of about 170 bytes: the 64 KiB pipe is full after some 400
DROPPED = re.compile(r'"msg":"(\d+) log lines dropped while stderr was blocked"')


class UnreadStderr:
    """A pipe for a server's stdout and stderr that nobody reads until `drain` starts reading it."""

    def __init__(self):
        self.read_end, self.write_end = os.pipe()
        self.text = ""
        self.reading = threading.Event()
        self.stopped = threading.Event()
        self.reader = threading.Thread(target=self.read, daemon=True)

    def drain(self) -> None:
        self.reading.set()
        if not self.reader.is_alive():
            self.reader.start()

    def pause(self) -> None:
        """Stop reading (the pipe fills up again)."""
        self.reading.clear()

    def read(self) -> None:
        while not self.stopped.is_set():
            if not self.reading.wait(0.1):
                continue
            if select.select([self.read_end], [], [], 0.1)[0]:
                data = os.read(self.read_end, 65536)
                if not data:
                    return
                self.text += data.decode("utf-8", "replace")

    def close(self) -> None:
        self.stopped.set()
        if self.reader.is_alive():
            self.reader.join(2)
        os.close(self.read_end)


def metric(port: int, name: str) -> float:
    status, _, body = HttpTransport(timeout=5).request("GET", f"http://127.0.0.1:{port}/metrics", {}, b"")
    assert status == 200
    families = text_string_to_metric_families(body.decode())
    return sum(s.value for f in families for s in f.samples if s.name == name)


def test_a_stderr_nobody_reads_drops_log_lines_but_never_a_webhook_a_worker_restart_or_a_stop(tmp_path):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "WEB_CONCURRENCY": "2"}
    env |= production_settings(f"http://127.0.0.1:{port}", HOST="127.0.0.1", PORT=str(port))
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    env["GUNICORN_CMD_ARGS"] = f"--timeout {TIMEOUT}"
    stderr = UnreadStderr()
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    process = popen(
        [gunicorn, "-c", str(REPO / "gunicorn.conf.py")],
        env=env,
        cwd=tmp_path,
        stdout=stderr.write_end,
        stderr=stderr.write_end,
    )
    os.close(stderr.write_end)
    try:
        wait_until(lambda: _healthy(port), 30, "the server")
        phone = Simulator(HttpTransport(timeout=3), f"http://127.0.0.1:{port}/sms", token=TOKEN)
        started, slowest = time.monotonic(), 0.0
        for i in range(WEBHOOKS):
            sent = time.monotonic()
            assert phone.send(f"hello {i}", f"+1500555{i % 500:04d}", SERVICE).status == 200, i
            slowest = max(slowest, time.monotonic() - sent)
            if i % 100 == 0:
                assert http_status(port, "/healthz", timeout=3) == 200
        flood = time.monotonic() - started
        print(
            f"\n{WEBHOOKS} webhooks into an unread stderr in {flood:.1f} s, the slowest {slowest * 1000:.0f} ms"
        )
        assert flood < 30

        workers = _children(process.pid)
        os.kill(
            workers[0], signal.SIGSTOP
        )  # hung: the master logs WORKER TIMEOUT into the full pipe, kills it
        hung_at = time.monotonic()
        wait_until(lambda: workers[0] not in _children(process.pid) and len(_children(process.pid)) == 2, 15,
                   "a replacement worker")  # fmt: skip
        print(
            f"a hung worker was replaced {time.monotonic() - hung_at:.1f} s after it hung (timeout {TIMEOUT} s)"
        )
        assert phone.send("after the restart", "+15005550001", SERVICE).status == 200

        stderr.drain()
        wait_until(lambda: DROPPED.search(stderr.text), 10, "the dropped-lines line")
        wait_until(
            lambda: "WORKER TIMEOUT" in stderr.text, 5, "the master's line, kept while the pipe was full"
        )
        told = sum(int(n) for n in DROPPED.findall(stderr.text))
        counted = metric(port, "responder_log_lines_dropped_total")
        print(f"once drained: {told} dropped lines told in the log, {counted:.0f} counted in /metrics")
        assert 0 < told <= counted  # the killed worker's drops were counted, never told

        stderr.pause()
        time.sleep(0.3)
        for i in range(600):  # fill the pipe again
            assert phone.send(f"more {i}", f"+1500555{i % 500:04d}", SERVICE).status == 200
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = reap(process, grace=15)
        print(f"SIGTERM with the pipe full: exit {code} after {time.monotonic() - stopping:.1f} s")
        assert code == 0 and time.monotonic() - stopping < 10
    finally:
        reap(process, grace=0)
        stderr.close()


def _healthy(port: int) -> bool:
    try:
        return http_status(port, "/healthz", timeout=2) == 200
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    return group_members(pid)[1:]


CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
import logs
logs.configure_logging(production=True)
counted = []
logs.STDERR.on_drop = counted.append  # what metrics.py gives responder_log_lines_dropped_total
started = time.monotonic()
for n in range(2000):
    logs.log.info("line %d", n)
print(f"{time.monotonic() - started:.3f}", flush=True)
end = time.monotonic() + 10  # the test reads stderr from now on: wait for the backlog to be written
while (logs.STDERR.pending or logs.STDERR.dropped) and time.monotonic() < end:
    time.sleep(0.05)
print(sum(counted), flush=True)
"""


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_every_line_is_either_written_once_the_pipe_drains_or_counted_as_dropped(user, tmp_path):
    # As root the process opens the pipe again, non-blocking; as another user (a container's non-root
    # user writing into the runtime's pipe) it cannot, and writes only what the pipe has room for.
    if os.geteuid() != 0:
        pytest.skip("runs the writer as another user: run as root")
    python = sys.executable if user == "root" else "/usr/bin/python3"  # the venv may be private to root
    if not os.access(python, os.X_OK):
        pytest.skip(f"needs {python}")
    stderr = UnreadStderr()
    child = popen(
        [python, "-c", CHILD, str(REPO)],
        stdout=subprocess.PIPE,
        stderr=stderr.write_end,
        user=65534 if user == "nobody" else None,
        text=True,
    )
    os.close(stderr.write_end)
    try:
        assert select.select([child.stdout], [], [], 10)[0], "logging blocked on the full pipe"
        seconds = float(child.stdout.readline())
        print(f"\n2,000 lines logged into a pipe nobody read in {seconds * 1000:.0f} ms")
        assert seconds < 2
        stderr.drain()
        wait_until(lambda: child.poll() is not None, 10, "the child's exit")
        counted = int(child.stdout.readline())
        wait_until(lambda: DROPPED.search(stderr.text), 2, "the dropped-lines line")
    finally:
        reap(child, grace=0)
        child.stdout.close()
        stderr.close()
    written = re.findall(r'"msg":"line (\d+)"', stderr.text)
    (dropped,) = (int(n) for n in DROPPED.findall(stderr.text))
    print(f"{len(written)} written, {dropped} dropped")
    assert len(written) + dropped == 2000 and dropped == counted > 0
    assert [int(n) for n in written] == sorted(int(n) for n in written)  # in order, none twice


MASTER = """
import os, sys
sys.path.insert(0, sys.argv[1])
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[2]
import serve
serve.count_dropped_log_lines_of_the_master(3)
serve.count_dropped_log_lines_of_the_master(4)
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
print(generate_latest(registry).decode())
"""


def test_the_lines_the_master_drops_are_counted_in_its_own_metrics_file(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", MASTER, str(REPO), str(folder)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "responder_log_lines_dropped_total 7.0" in result.stdout.splitlines()
    (counter,) = folder.glob("counter_*.db")  # the master's own, reserved like a worker's
    assert counter.stat().st_size == 64 * 1024
