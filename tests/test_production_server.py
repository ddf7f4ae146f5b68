"""The production server as operators start it: `gunicorn -c gunicorn.conf.py` and `make serve`."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest
from helpers import (
    ALICE,
    REPO,
    SERVICE,
    TOKEN,
    echoed,
    gunicorn_setting,
    phone_at,
    stop_during_webhook,
)

from devtools.servers import stat_fields
from devtools.simulator import Reply, sign
from gevent_worker import KEEPALIVE_REQUESTS

pytestmark = pytest.mark.server


def timed_stop(server) -> tuple[float, int | None]:
    """SIGTERM the server; return the seconds to its exit and its exit code."""
    started = time.perf_counter()
    exit_code = server.stop(grace=20)
    return time.perf_counter() - started, exit_code


def test_make_serve_runs_gunicorn_with_the_checked_in_configuration(start_server):
    server = start_server(["make", "--no-print-directory", "-C", str(REPO), "serve"])
    (master,) = [pid for pid in server.pids() if int(stat_fields(pid)[1]) == server.process.pid]
    title = Path(f"/proc/{master}/cmdline").read_bytes().split(b"\0")[0]  # make's child, retitled
    assert title == b"gunicorn: master [%s]" % gunicorn_setting("proc_name").encode()
    assert phone_at(server.port).send("hello", ALICE, SERVICE).text == echoed(1, "hello")


def test_sigterm_answers_the_webhook_in_flight_closes_idle_connections_and_exits_0(production_server):
    server = production_server()
    shutdown = stop_during_webhook(server.port, phone_at(server.port), lambda: timed_stop(server))
    assert shutdown.in_flight == (200, echoed(1, "in flight"))
    assert shutdown.idle_closed_at_once, "an idle connection held the worker until graceful_timeout"
    assert shutdown.exit_code == 0 and shutdown.seconds < min(8, gunicorn_setting("graceful_timeout"))


def test_forwarded_headers_from_localhost_do_not_reshape_the_signed_url(production_server):
    server = production_server()
    phone = phone_at(server.port)
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


def test_a_keep_alive_connection_closes_after_its_hundredth_request_and_the_client_reconnects(
    production_server,
):
    server = production_server()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    closes = []
    for _ in range(KEEPALIVE_REQUESTS):
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        closes.append((response.status, response.getheader("Connection"), response.will_close))
    assert KEEPALIVE_REQUESTS == 100
    assert closes[:-1] == [(200, "keep-alive", False)] * (KEEPALIVE_REQUESTS - 1)
    assert closes[-1] == (200, "close", True)
    connection.request("GET", "/healthz")  # http.client opens a new connection, as clients do
    assert connection.getresponse().status == 200
    connection.close()


def test_a_cookie_sent_in_a_second_cookie_header_continues_the_conversation(production_server):
    server = production_server()
    phone = phone_at(server.port)
    assert phone.send("hello", ALICE, SERVICE).text == echoed(1, "hello")
    params = phone.params("again", ALICE, SERVICE)
    _, signed, body = phone.prepare(params, phone.cookie_header(ALICE, SERVICE))
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", "/sms")
    for name, value in [("Cookie", "theme=dark"), *signed.items(), ("Content-Length", str(len(body)))]:
        connection.putheader(name, value)  # two Cookie headers: gunicorn joins them with ","
    connection.endheaders(body)
    response = connection.getresponse()
    reply = Reply(response.status, response.read(), {}, [], params["MessageSid"])
    connection.close()
    assert reply.status == 200 and "#2" in reply.text, reply.text


class RecordedSocket:
    """A connection's socket that records each write; `broken` makes every write fail."""

    def __init__(self, broken: bool = False):
        self.writes: list[bytes] = []
        self.broken = broken

    def sendall(self, data) -> None:
        if self.broken:
            raise BrokenPipeError(32, "Broken pipe")
        self.writes.append(bytes(data))


def gunicorn_response(sock, body: bytes):
    """Answer through gunicorn's own Response writer, as its workers do, on `sock`."""
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.http.wsgi import Response

    request = SimpleNamespace(version=(1, 1), method="POST", should_close=lambda: False, headers=[])
    response = Response(request, sock, Config())
    response.start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    if body:
        response.write(body)
    response.close()


def test_a_responses_header_block_goes_out_in_the_same_write_as_its_body():
    from gevent_worker import OneWriteSocket

    recorded = RecordedSocket()
    gunicorn_response(OneWriteSocket(recorded), b"<Response/>")
    (write,) = recorded.writes
    assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"\r\n\r\n<Response/>")


def test_a_response_without_a_body_sends_its_headers_when_the_worker_flushes():
    from gevent_worker import OneWriteSocket

    recorded = RecordedSocket()
    one_write = OneWriteSocket(recorded)
    gunicorn_response(one_write, b"")
    assert recorded.writes == []
    one_write.flush()  # the worker's handle_request does this last
    (write,) = recorded.writes
    assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"Content-Length: 0\r\n\r\n")
    one_write.flush()
    assert len(recorded.writes) == 1
    broken = OneWriteSocket(RecordedSocket(broken=True))
    gunicorn_response(broken, b"")
    broken.flush()  # a client that went away: nothing to do
