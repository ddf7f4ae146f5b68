"""A slow or idle client costs a connection, never a worker: `make serve` alone, no nginx in front."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack

import pytest
from helpers import SERVICE, TOKEN, running_server, served_settings

from devtools.servers import http_status
from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server

TRICKLING = 50
IDLE = 3000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(
        "serve", served_settings(2), tmp_path_factory.mktemp("slow") / "server.log"
    ) as server:
        yield server.port


def timed_webhook(port: int, sender: str) -> tuple[int, float]:
    """Send one signed webhook; return its status and the seconds it took."""
    phone = Simulator(HttpTransport(timeout=5), f"http://127.0.0.1:{port}/sms", token=TOKEN)
    started = time.monotonic()
    status = phone.send("hello", sender, SERVICE).status
    return status, time.monotonic() - started


def timed_health(port: int) -> tuple[int, float]:
    started = time.monotonic()
    status = http_status(port, "/healthz", timeout=5)
    return status, time.monotonic() - started


def open_connection(port: int, stack: ExitStack) -> socket.socket:
    sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
    return sock


def test_trickled_bodies_and_idle_connections_do_not_delay_webhooks(server):
    with ExitStack() as stack:
        trickling = []
        for _ in range(TRICKLING):  # headers complete, then a webhook body at one byte per second
            sock = open_connection(server, stack)
            sock.sendall(
                b"POST /sms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 1000\r\nX-Twilio-Signature: x\r\n\r\nF"
            )
            trickling.append(sock)
        for i in range(IDLE):  # connected, nothing sent; every tenth with half a request line
            sock = open_connection(server, stack)
            if i % 10 == 0:
                sock.sendall(b"POST /sms HT")
        time.sleep(0.5)  # let the server take them all in
        answers = []
        for second in range(3):
            for sock in trickling:
                sock.sendall(b"r")
            answers.append(("webhook", *timed_webhook(server, f"+1500555{second:04d}")))
            answers.append(("healthz", *timed_health(server)))
            time.sleep(max(0.0, 1.0 - answers[-1][2] - answers[-2][2]))
    print("answered in", ", ".join(f"{what} {seconds * 1000:.1f} ms" for what, _, seconds in answers))
    for what, status, seconds in answers:
        assert status == 200, answers
        assert seconds < 1.0, f"{what} took {seconds:.2f} s behind {TRICKLING} slow and {IDLE} idle clients"
