"""gunicorn's gevent worker, closing idle keep-alive connections as soon as it is told to stop."""

from __future__ import annotations

import contextlib
import select

import gevent
from gunicorn.workers.ggevent import GeventWorker


class Worker(GeventWorker):
    """A gevent worker whose graceful stop waits for requests in flight, never for idle connections."""

    # gunicorn's own worker waits for every open connection, so one idle keep-alive client holds a stopping
    # worker for the whole graceful_timeout. This one ends each connection's wait for its next request.

    def init_process(self) -> None:
        self.waiting_for_request: dict = {}  # greenlet -> (its keep-alive Timeout, its socket)
        self.sockets_by_greenlet: dict = {}
        super().init_process()

    def handle(self, listener, client, addr) -> None:
        self.sockets_by_greenlet[gevent.getcurrent()] = client
        try:
            super().handle(listener, client, addr)
        finally:
            self.sockets_by_greenlet.pop(gevent.getcurrent(), None)

    @contextlib.contextmanager
    def timeout_ctx(self):
        """Wait for the connection's next request: keepalive seconds, none at all once stopping."""
        timeout = gevent.Timeout(self.cfg.keepalive if self.alive else 0, False)
        current = gevent.getcurrent()
        self.waiting_for_request[current] = (timeout, self.sockets_by_greenlet.get(current))
        try:
            with timeout:
                yield
        finally:
            self.waiting_for_request.pop(current, None)

    def handle_exit(self, sig, frame) -> None:
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
