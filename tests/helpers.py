"""What tests share besides fixtures: the test keys, numbers and URLs (literal keys live only in test code)."""

from __future__ import annotations

import ast
import http.client
import socket
from pathlib import Path
from urllib.parse import urlsplit

from devtools.simulator import Reply, Simulator

REPO = Path(__file__).resolve().parent.parent
IMAGE = "localhost/sms-responder:0.2.0"  # the tag deploy/kubernetes names
HARDENED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")

SECRET = "test-secret-3f9a1c7e5b2d8a4f6c0e9b1d7a3f5c8e"
OTHER_SECRET = "test-secret-other-8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
TOKEN = "0123456789abcdef0123456789abcdef"
SECONDARY_TOKEN = "fedcba9876543210fedcba9876543210"
PUBLIC_URL = "https://sms.example.com"
WEBHOOK_URL = PUBLIC_URL + "/sms"
COOKIE = "conversation"

ALICE, BOB, CAROL = "+15005550101", "+15005550102", "+15005550103"
SERVICE, OTHER_SERVICE = "+15005550199", "+15005550198"


def production_settings(public_url: str, **extra: str) -> dict[str, str]:
    """Return the settings a production server needs, with the tests' key and token."""
    return {
        "RESPONDER_ENV": "production",
        "SECRET_KEY": SECRET,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "PUBLIC_URL": public_url,
        **extra,
    }


class HalfSentWebhook:
    """A signed webhook sent straight to a server on 127.0.0.1, held back before its last bytes."""

    def __init__(self, port: int, phone: Simulator, sender: str, headers: dict[str, str] | None = None):
        url, signed, body = phone.prepare(phone.params("in flight", sender, SERVICE), "")
        signed.update({"Host": urlsplit(url).netloc, "Content-Length": str(len(body)), **(headers or {})})
        lines = "".join(f"{name}: {value}\r\n" for name, value in signed.items())
        request = f"POST {urlsplit(url).path} HTTP/1.1\r\n{lines}\r\n".encode() + body
        self.rest = request[-10:]
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.socket.sendall(request[:-10])

    def finish(self) -> tuple[int, str]:
        """Send the last bytes; return the status and the reply text."""
        try:
            self.socket.sendall(self.rest)
            response = http.client.HTTPResponse(self.socket)
            try:
                response.begin()
                return response.status, Reply(response.status, response.read(), {}, [], "").text
            finally:
                response.close()
        finally:
            self.socket.close()


class IdleConnection:
    """A keep-alive connection that made one request and now sits idle, as a proxy's pool keeps them."""

    def __init__(self, port: int):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.socket.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = http.client.HTTPResponse(self.socket)
        response.begin()
        response.read()
        assert response.status == 200 and not response.will_close

    def closed_by_server(self, timeout: float) -> bool:
        """Wait up to `timeout` s; tell whether the server closed the connection."""
        self.socket.settimeout(timeout)
        try:
            return self.socket.recv(1) == b""
        except TimeoutError:
            return False
        finally:
            self.socket.close()


def gunicorn_setting(name: str):
    """Return a literal setting of gunicorn.conf.py, read without running it."""
    tree = ast.parse((REPO / "gunicorn.conf.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise KeyError(f"gunicorn.conf.py sets no {name}")
