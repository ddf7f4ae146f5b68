"""gunicorn's gevent worker with the webhook's deadlines: bodies in time, refusals that close, quick stops."""

from __future__ import annotations

import contextlib
import select

import gevent
from gunicorn import util
from gunicorn.http.errors import LimitRequestLine
from gunicorn.workers.ggevent import GeventWorker

BODY_DEADLINE_SECONDS = 5.0  # a webhook's body arrives with its headers; Twilio itself gives up after 15 s
# A keep-alive connection stays with the worker that accepted it. Closing it after this many requests (as
# nginx's keepalive_requests does) lets the client reconnect to whichever worker accepts first, the less
# busy one, so the load evens out across workers instead of staying where the first connections landed.
KEEPALIVE_REQUESTS = 100
URI_TOO_LONG = (
    "414 URI Too Long: the request line is over {limit:,} bytes; configure the webhook as HTTP POST, "
    "Twilio's default\n"
)


class Worker(GeventWorker):
    """A gevent worker that cuts slow bodies, closes after refusing a body, and never waits for idle clients."""

    def init_process(self) -> None:
        self.waiting_for_request: dict = {}  # greenlet -> (its keep-alive Timeout, its socket)
        self.sockets_by_greenlet: dict = {}
        super().init_process()

    def run(self) -> None:
        hub = gevent.get_hub()
        self.print_hub_exception = hub.print_exception
        hub.print_exception = self.log_hub_exception
        super().run()

    def log_hub_exception(self, context, kind, value, tb) -> None:
        """Log a socket error of the event loop in one line, not a traceback each time accept() is retried."""
        if isinstance(value, OSError):  # e.g. EMFILE: more connections than the file limit
            self.log.warning("socket error, retried: %s (%s)", value, context)
        else:
            self.print_hub_exception(context, kind, value, tb)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.max_body_bytes = getattr(self.wsgi, "config", {}).get("MAX_CONTENT_LENGTH")  # Flask's own limit

    def handle(self, listener, client, addr) -> None:
        self.sockets_by_greenlet[gevent.getcurrent()] = client
        try:
            super().handle(listener, client, addr)
        finally:
            self.sockets_by_greenlet.pop(gevent.getcurrent(), None)

    def handle_request(self, listener_name, req, sock, addr):
        """Serve one request within BODY_DEADLINE_SECONDS of its headers, or cut the connection."""
        if req.req_number >= KEEPALIVE_REQUESTS:
            req.must_close = True
        if self.refuses_body(req):
            # The app answers 411 or 413 without reading the body: close after that answer instead of
            # draining whatever follows, and never invite the body with "100 Continue".
            req.must_close = True
            req._expected_100_continue = False
        deadline = gevent.Timeout(BODY_DEADLINE_SECONDS)
        deadline.start()
        one_write = OneWriteSocket(sock)
        try:
            return super().handle_request(listener_name, req, one_write, addr)
        except gevent.Timeout as expired:
            if expired is not deadline:
                raise
            # Its traceback holds every frame of the request, body buffers included, and frames that
            # kept the exception (Flask's wsgi_app does) close a cycle: only the cyclic collector, at
            # its next full pass, would free them. Cut the traceback and the memory goes now.
            expired.__traceback__ = None
        finally:
            deadline.close()
            one_write.flush()
        self.log.warning(
            "request cut off: not answered %.0f s after its headers (a slow body)", deadline.seconds
        )
        raise StopIteration  # raised outside the except clause, so it holds no trace of the Timeout

    def refuses_body(self, req) -> bool:
        """Tell whether the app will refuse this request's body unread: chunked, or declared too large."""
        for name, value in req.headers:  # gunicorn itself refuses a request with two of either
            if name == "TRANSFER-ENCODING":  # gunicorn accepts only chunked, which has no length
                return True
            if name == "CONTENT-LENGTH":
                return bool(self.max_body_bytes) and value.isdigit() and int(value) > self.max_body_bytes
        return False

    def handle_error(self, req, client, addr, exc) -> None:
        """Refuse a GET webhook too long for a request line in plain text, as the app refuses, in one log line."""
        if not isinstance(exc, LimitRequestLine):
            super().handle_error(req, client, addr, exc)
            return
        self.log.warning("webhook refused", extra={"webhook": {"outcome": "refused:414", "why": str(exc)}})
        body = URI_TOO_LONG.format(limit=self.cfg.limit_request_line).encode()
        head = "HTTP/1.1 414 URI Too Long\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
        util.write_nonblock(client, f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def timeout_ctx(self) -> IdleWait:
        """Wait for the connection's next request: keepalive seconds, none at all once stopping."""
        return IdleWait(self, gevent.Timeout(self.cfg.keepalive if self.alive else 0, False))

    def handle_exit(self, sig, frame) -> None:
        # gunicorn's own worker waits for every open connection, so one idle keep-alive client would hold a
        # stopping worker for the whole graceful_timeout.
        super().handle_exit(sig, frame)
        gevent.spawn(self.end_idle_waits)

    def end_idle_waits(self) -> None:
        """End the wait of every connection that has no request arriving; it then closes cleanly."""
        loop = gevent.get_hub().loop
        for greenlet, (timeout, sock) in list(self.waiting_for_request.items()):
            if sock is not None and select.select([sock], [], [], 0)[0]:
                continue  # a request is arriving: it is answered, with Connection: close
            loop.run_callback(self.end_wait, greenlet, timeout)

    def end_wait(self, greenlet, timeout) -> None:
        """Raise the wait's own Timeout in its greenlet, as if keepalive had run out, if it still waits."""
        if self.waiting_for_request.get(greenlet, (None, None))[0] is timeout:
            greenlet.throw(timeout)


class IdleWait:
    """A connection's wait for its next request, known to its worker while it lasts (so a stop can end it)."""

    __slots__ = ("greenlet", "timeout", "waiting")

    def __init__(self, worker: Worker, timeout: gevent.Timeout):
        self.timeout, self.waiting, self.greenlet = timeout, worker.waiting_for_request, gevent.getcurrent()
        self.waiting[self.greenlet] = (timeout, worker.sockets_by_greenlet.get(self.greenlet))

    def __enter__(self) -> gevent.Timeout:
        return self.timeout.__enter__()

    def __exit__(self, *exc_info) -> bool:
        self.waiting.pop(self.greenlet, None)
        return self.timeout.__exit__(*exc_info)


class OneWriteSocket:
    """A connection's socket that sends a response's header block together with its first body bytes.

    gunicorn writes the headers and the body in two writes: a worker killed between them leaves a proxy
    holding headers it has begun passing on, so it can neither retry the request nor finish the reply.
    """

    __slots__ = ("held", "sock")

    def __init__(self, sock):
        self.sock, self.held = sock, b""

    def sendall(self, data) -> None:
        if not self.held and data[:5] == b"HTTP/" and data.endswith(b"\r\n\r\n"):
            self.held = bytes(data)  # the header block: it goes out with what follows
            return
        data, self.held = self.held + bytes(data), b""
        self.sock.sendall(data)

    def flush(self) -> None:
        """Send a header block still held (a response without a body); a broken connection is dropped."""
        if self.held:
            held, self.held = self.held, b""
            with contextlib.suppress(OSError):
                self.sock.sendall(held)

    def fileno(self) -> int:
        self.flush()  # sendfile writes to the descriptor itself: the headers go first
        return self.sock.fileno()

    def __getattr__(self, name):
        return getattr(self.sock, name)
