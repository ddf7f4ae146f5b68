"""The production server as operators start it: `gunicorn -c gunicorn.conf.py`, `make serve`, a runtime-only venv."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from helpers import (
    ALICE,
    GREETING,
    REPO,
    SERVICE,
    TOKEN,
    gunicorn_setting,
    production_settings,
    stop_during_webhook,
)

from devtools.servers import Server, free_port, stat_fields
from devtools.simulator import HttpTransport, Simulator, sign

pytestmark = pytest.mark.server


def server_env(port: int, **extra: str) -> dict[str, str]:
    """A clean environment with production settings for a server on 127.0.0.1:port."""
    settings = production_settings(f"http://127.0.0.1:{port}", HOST="127.0.0.1", PORT=str(port), **extra)
    return {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "WEB_CONCURRENCY": "2", **settings}


def start(command: list[str], tmp_path: Path, **extra: str) -> Server:
    port = free_port()
    server = Server(command, server_env(port, **extra), port, tmp_path / "server.log", tmp_path)
    server.start()
    return server


def phone_for(server: Server) -> Simulator:
    return Simulator(HttpTransport(), f"http://127.0.0.1:{server.port}/sms", token=TOKEN)


def timed_stop(server: Server) -> tuple[float, int | None]:
    started = time.perf_counter()
    return server.stop(grace=20), time.perf_counter() - started


@pytest.fixture
def gunicorn(tmp_path):
    """Start `gunicorn -c gunicorn.conf.py` from the repository, with production settings."""
    servers = []

    def run(**extra: str) -> Server:
        server = start([str(Path(sys.executable).parent / "gunicorn"), "-c", str(REPO / "gunicorn.conf.py")],
                       tmp_path, **extra)  # fmt: skip
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.stop()


def test_make_serve_runs_gunicorn_with_the_checked_in_configuration(tmp_path):
    server = start(["make", "--no-print-directory", "-C", str(REPO), "serve"], tmp_path)
    try:
        (master,) = [pid for pid in server.pids() if int(stat_fields(pid)[1]) == server.process.pid]
        title = Path(f"/proc/{master}/cmdline").read_bytes().split(b"\0")[0]  # make's child, retitled
        assert title == b"gunicorn: master [%s]" % gunicorn_setting("proc_name").encode()
        assert phone_for(server).send("hello", ALICE, SERVICE).text == GREETING
    finally:
        server.stop()


def test_sigterm_answers_the_webhook_in_flight_closes_idle_connections_and_exits_0(gunicorn):
    server = gunicorn()
    shutdown = stop_during_webhook(server.port, phone_for(server), lambda: timed_stop(server)[::-1])
    assert shutdown.in_flight == (200, GREETING)
    assert shutdown.idle_closed_at_once, "an idle connection held the worker until graceful_timeout"
    assert shutdown.exit_code == 0 and shutdown.seconds < min(8, gunicorn_setting("graceful_timeout"))


def test_forwarded_headers_from_localhost_do_not_reshape_the_signed_url(gunicorn):
    server = gunicorn()
    phone = phone_for(server)
    params = phone.params("hello", ALICE, SERVICE)
    staging = f"http://127.0.0.1:{server.port}/staging/sms"
    replayed = {"SCRIPT_NAME": "/staging", "X-Twilio-Signature": sign(TOKEN, staging, params)}
    https = {
        "X-Forwarded-Proto": "https",
        "X-Twilio-Signature": sign(TOKEN, phone.url.replace("http:", "https:"), params),
    }
    for headers in (replayed, https):
        url, signed, body = phone.prepare(params, "")
        status, _, _ = phone.transport.request("POST", url, {**signed, **headers}, body)
        assert status == 403, headers
    assert phone.deliver(params).status == 200
