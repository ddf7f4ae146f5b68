"""Start and stop real server processes on 127.0.0.1 for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not healthy after {timeout} s")


@contextmanager
def running_server(mode: str, env: dict, log_path: Path):
    """Run `serve.py MODE` with `env` on a free port; yield the port; stop it afterwards."""
    port = free_port()
    full_env = {"PATH": os.environ.get("PATH", ""), "HOST": "127.0.0.1", "PORT": str(port), **env}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "serve.py"), mode], cwd=REPO, env=full_env, stdout=log, stderr=log
        )
        try:
            wait_healthy(port, process)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
