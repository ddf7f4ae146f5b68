"""Slow bodies are cut off, refused bodies are never read, and the server's own refusals cost one log line.

Against `gunicorn -c gunicorn.conf.py` (what `make serve` runs), no nginx in front.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import ExitStack, suppress
from urllib.parse import urlsplit

import pytest
from helpers import ALICE, SERVICE, TOKEN, gunicorn_setting, phone_at

from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server

FORM_HEADERS = b"Host: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"


def connect(port: int, stack: ExitStack | None = None, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return stack.enter_context(sock) if stack else sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Read what the server sends until it closes the connection, then close ours."""
    received = b""
    with sock, suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def request_line_length(phone: Simulator, body: str) -> int:
    """Return the length of the request line of a GET webhook carrying `body`."""
    parts = urlsplit(phone.prepare(phone.params(body, ALICE, SERVICE), "")[0])
    return len(f"GET {parts.path}?{parts.query} HTTP/1.1")


def log_lines(server, marker: str) -> list[str]:
    return [line for line in server.log_path.read_text().splitlines() if marker in line]


def test_a_body_trickled_one_byte_every_3_seconds_is_cut_off_within_30_seconds(production_server):
    server = production_server()
    sock = connect(server.port)
    started = time.monotonic()
    sock.sendall(b"POST /sms HTTP/1.1\r\n" + FORM_HEADERS + b"Content-Length: 1000\r\n\r\nF")
    cut_after = None
    while time.monotonic() - started < 30:
        try:
            sock.sendall(b"r")
        except OSError:
            cut_after = time.monotonic() - started
            break
        sock.settimeout(3)
        try:
            if sock.recv(1) == b"":
                cut_after = time.monotonic() - started
                break
        except TimeoutError:
            pass
    sock.close()
    print(f"\na body trickled one byte every 3 s was cut off after {cut_after:.1f} s")
    assert cut_after is not None and cut_after < 30
    assert len(log_lines(server, "request cut off")) == 1
    assert phone_at(server.port).send("hello", ALICE, SERVICE).status == 200


def test_an_oversized_body_gets_413_at_once_and_is_never_read(production_server):
    server = production_server()
    sock = connect(server.port)
    sock.sendall(b"POST /sms HTTP/1.1\r\n" + FORM_HEADERS + b"Content-Length: 314572800\r\n\r\n")
    sent = 0
    try:
        for _ in range(1280):  # 10 MiB of the announced 300: the server has answered and closed long before
            sock.sendall(b"x" * 8192)
            sent += 8192
    except OSError:
        pass
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"\r\nConnection: close\r\n" in answer
    assert sent < 10 * 1024 * 1024, "the server kept reading the body it refused"


def test_an_oversized_body_announced_with_expect_100_continue_gets_the_413_not_a_100(production_server):
    server = production_server()
    sock = connect(server.port)
    sock.sendall(
        b"POST /sms HTTP/1.1\r\n" + FORM_HEADERS + b"Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
    )
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer


def test_a_chunked_webhook_gets_411_and_the_connection_closes(production_server):
    server = production_server()
    sock = connect(server.port)
    sock.sendall(
        b"POST /sms HTTP/1.1\r\n" + FORM_HEADERS + b"Transfer-Encoding: chunked\r\n\r\n5\r\nFrom=\r\n"
    )
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 411 ") and b"\r\nConnection: close\r\n" in answer


def test_a_get_webhook_over_the_request_line_limit_gets_a_plain_414_and_one_log_line(production_server):
    server = production_server()
    phone = Simulator(HttpTransport(), f"http://127.0.0.1:{server.port}/sms", token=TOKEN, method="GET")
    longest = max(
        n
        for n in range(1600)
        if request_line_length(phone, "é" * n) <= gunicorn_setting("limit_request_line")
    )
    print(f"\nthe longest GET webhook body that fits: {longest} two-byte characters")
    fitting = phone.send("é" * longest, ALICE, SERVICE)
    too_long = phone.send("é" * (longest + 1), ALICE, SERVICE)
    assert fitting.status == 200 and longest >= 1200
    assert too_long.status == 414 and too_long.headers["content-type"] == "text/plain; charset=utf-8"
    assert "configure the webhook as HTTP POST" in too_long.body.decode()
    (line,) = log_lines(server, "refused:414")
    assert line.startswith("{") and len(line) < 300


def test_malformed_requests_cost_one_short_log_line_each(production_server):
    server = production_server()
    for garbage in [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
    ] * 5:
        sock = connect(server.port)
        sock.sendall(garbage)
        assert read_until_closed(sock).startswith(b"HTTP/1.1 400 ")
    time.sleep(0.5)
    lines = log_lines(server, "Invalid request")
    log = server.log_path.read_text()
    print(f"\n{len(lines)} malformed requests logged {sum(map(len, lines))} bytes")
    assert len(lines) == 15 and all(line.startswith("{") and len(line) < 300 for line in lines)
    assert "Traceback" not in log and "Logging error" not in log


def test_under_a_1024_file_limit_2100_trickling_bodies_leave_a_webhook_answered_within_35_seconds(
    production_server,
):
    server = production_server(prefix=("prlimit", "--nofile=1024:1024", "--"))
    stop = threading.Event()
    with ExitStack() as stack:
        trickling = []
        for _ in range(2100):
            sock = connect(server.port, stack)
            sock.sendall(b"POST /sms HTTP/1.1\r\n" + FORM_HEADERS + b"Content-Length: 1000\r\n\r\nF")
            trickling.append(sock)

        def trickle() -> None:
            while not stop.wait(3):
                for sock in trickling:
                    with suppress(OSError):
                        sock.sendall(b"r")

        threading.Thread(target=trickle, daemon=True).start()
        started = time.monotonic()
        answered_after = None
        phone = phone_at(server.port)
        phone.transport.timeout = 5
        while time.monotonic() - started < 40:
            try:
                if phone.send("hello", ALICE, SERVICE).status == 200:
                    answered_after = time.monotonic() - started
                    break
            except OSError:
                pass
        stop.set()
    print(
        f"\nbehind 2,100 trickling bodies under a 1,024-file limit, a webhook was answered after {answered_after} s"
    )
    assert answered_after is not None and answered_after < 35
    assert "Traceback" not in server.log_path.read_text()
