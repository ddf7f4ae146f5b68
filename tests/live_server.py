"""Run `serve.py` as a real server process on 127.0.0.1 for tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from devtools.servers import free_port, running

REPO = Path(__file__).resolve().parent.parent


def production_env(workers: int) -> dict[str, str]:
    """The settings `make serve` needs, with the tests' key and token."""
    from conftest import SECRET, TOKEN

    return {
        "RESPONDER_ENV": "production",
        "SECRET_KEY": SECRET,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "WEB_CONCURRENCY": str(workers),
    }


@contextmanager
def running_server(mode: str, env: dict, log_path: Path, prefix: Sequence[str] = ()):
    """Run `serve.py MODE` with `env` on a free port; yield its Server (`.port`, `.pids()`); stop it afterwards."""
    port = free_port()
    full_env = {"PATH": os.environ.get("PATH", ""), "HOST": "127.0.0.1", "PORT": str(port), **env}
    if mode == "serve":  # production checks signatures for PUBLIC_URL: where the tests reach the server
        full_env.setdefault("PUBLIC_URL", f"http://127.0.0.1:{port}")
    # `prefix` runs the server through another command, e.g. ["faketime", "-f", "+5s"]: a clock ahead.
    command = [*prefix, sys.executable, str(REPO / "serve.py"), mode]
    with running(command, full_env, REPO, log_path, port) as server:
        yield server
