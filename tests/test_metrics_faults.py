"""The production server on a metrics folder it cannot write: full, read-only, or impossible to make.

Before, every worker died of SIGBUS as it booted (its first write into a sparse mapped file on a full
file system) and was replaced at once, 55 to 107 of them in 5 to 6 s: no webhook was answered, the master
never exited. Each test mounts a small tmpfs, so it needs root (it skips otherwise).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ALICE, GREETING, REPO, SERVICE, TOKEN, production_settings

from devtools.servers import Server, free_port, http_status, wait_until
from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server

WORKERS = 2
WARNING = "metrics are off in this worker"


@contextlib.contextmanager
def small_tmpfs(path: Path):
    """Mount a 64 KiB tmpfs at `path`, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounts a tmpfs: run as root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def spoil(mount: Path, fault: str) -> Path:
    """Make the folder on `mount` unwritable as `fault` says; return what PROMETHEUS_MULTIPROC_DIR names."""
    if fault == "full":
        with (mount / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)
        return mount
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    return mount if fault == "read-only" else mount / "metrics"


def gunicorn(tmp_path: Path, folder: Path) -> Server:
    """Prepare `gunicorn -c gunicorn.conf.py` with production settings, its metrics in `folder`."""
    port = free_port()
    settings = production_settings(f"http://127.0.0.1:{port}", HOST="127.0.0.1", PORT=str(port))
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "WEB_CONCURRENCY": str(WORKERS), **settings}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    command = [str(Path(sys.executable).parent / "gunicorn"), "-c", str(REPO / "gunicorn.conf.py")]
    return Server(command, env, port, tmp_path / "server.log", tmp_path)


@pytest.mark.parametrize("fault", ["full", "read-only", "cannot be made"])
def test_webhooks_are_answered_when_the_metrics_folder_cannot_be_written(fault, tmp_path):
    with small_tmpfs(tmp_path / "mount") as mount:
        folder = spoil(mount, fault)
        server = gunicorn(tmp_path, folder)
        try:
            server.start(timeout=20)
            wait_until(lambda: len(server.pids()) == 1 + WORKERS, 20, f"{WORKERS} workers")
            workers = set(server.pids()[1:])
            phone = Simulator(HttpTransport(timeout=5), f"http://127.0.0.1:{server.port}/sms", token=TOKEN)
            replies = [phone.send(f"hello {i}", ALICE, SERVICE) for i in range(50)]
            assert replies[0].text == GREETING and {r.status for r in replies} == {200}
            assert http_status(server.port, "/metrics") == 503
            time.sleep(1)  # a worker that died would have been replaced by now
            assert set(server.pids()[1:]) == workers, server.log_tail()
            log = server.log_path.read_text()
            assert log.count(f"{WARNING}: PROMETHEUS_MULTIPROC_DIR={folder} cannot be written") == WORKERS
        finally:
            server.stop()
