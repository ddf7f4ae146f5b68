"""What tests share besides fixtures: the test keys, numbers and URLs (literal keys live only in test code),
the production settings, server harnesses and cookie-jar helpers."""

from __future__ import annotations

import ast
import http.client
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import settings as hypothesis_settings

from devtools.servers import free_port, running
from devtools.simulator import HttpTransport, Reply, Simulator, StoredCookie
from greeting import DEFAULT_COUNT_REPLY, DEFAULT_GREETING

REPO = Path(__file__).resolve().parent.parent
IMAGE = "localhost/sms-responder:0.2.0"  # the tag deploy/kubernetes names
HARDENED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")

SECRET = "test-secret-3f9a1c7e5b2d8a4f6c0e9b1d7a3f5c8e"
OTHER_SECRET = "test-secret-other-8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
TOKEN = "0123456789abcdef0123456789abcdef"
SECONDARY_TOKEN = "fedcba9876543210fedcba9876543210"
PUBLIC_URL = "https://sms.example.com"
WEBHOOK_URL = PUBLIC_URL + "/sms"
PROBE = "probe_conversation:echo"  # the in-process tests run this conversation, not the built-in one
# What ships runs the built-in conversation: the tests of servers and the image expect its texts as
# rendered from its own templates, so only tests/test_greeting.py pins the wording.
GREETING = DEFAULT_GREETING.format(name="Friend")
COOKIE = "conversation"

ALICE, BOB, CAROL = "+15005550101", "+15005550102", "+15005550103"
SERVICE, OTHER_SERVICE = "+15005550199", "+15005550198"


def count_reply(count: int) -> str:
    """Return the built-in conversation's reply to message `count` (> 1), from its own template."""
    return DEFAULT_COUNT_REPLY.format(name="Friend", count=count)


def echoed(count: int, body: str, turns: int | None = None, name: str = "Friend") -> str:
    """Return the probe conversation's reply: the service's count, the caller's name, the body."""
    return f"#{count} {name}: {body} (turns={turns or count})"


def production_settings(public_url: str = PUBLIC_URL, **extra: str) -> dict[str, str]:
    """Return the settings a production server needs, with the tests' key and token."""
    return {
        "RESPONDER_ENV": "production",
        "SECRET_KEY": SECRET,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "PUBLIC_URL": public_url,
        **extra,
    }


def problems(env: dict, tmp_path: Path) -> list[str]:
    """Return the problems that make `load_settings` refuse `env`."""
    from config import ConfigError, load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings(env, tmp_path / "dev-secret-key")
    return caught.value.problems


@contextmanager
def running_server(mode: str, env: dict, log_path: Path, prefix: Sequence[str] = ()):
    """Run `serve.py MODE` with `env` on a free port; yield its Server (`.port`, `.pids()`); stop it afterwards."""
    port = free_port()
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **probe_env(),
        **env,
    }
    if mode == "serve":  # production checks signatures for PUBLIC_URL: where the tests reach the server
        full_env.setdefault("PUBLIC_URL", f"http://127.0.0.1:{port}")
    # `prefix` runs the server through another command, e.g. ["faketime", "-f", "+5s"]: a clock ahead.
    command = [*prefix, sys.executable, str(REPO / "serve.py"), mode]
    with running(command, full_env, REPO, log_path, port) as server:
        yield server


def probe_env() -> dict[str, str]:
    """Return the settings that make a server run the probe conversation from tests/ (CONVERSATION="": the built-in)."""
    return {"CONVERSATION": PROBE, "PYTHONPATH": str(REPO / "tests")}


def served_settings(workers: int, **extra: str) -> dict[str, str]:
    """Return production settings for `running_server("serve", ...)`: PUBLIC_URL is where it listens."""
    settings = production_settings(WEB_CONCURRENCY=str(workers), **extra)
    del settings["PUBLIC_URL"]
    return settings


def rewrite(path: Path, text: str, clock) -> None:
    """Replace a file's text and date it after the frozen clock, as an operator's later edit would be."""
    path.write_text(text)
    os.utime(path, (clock() + 1, clock() + 1))


def plant_cookie(phone: Simulator, sender: str, to: str, value: str, clock) -> None:
    """Put a cookie in a pair's jar, as a client that ignores expiry (or an attacker) would."""
    phone.jars.setdefault((sender, to), {})[COOKIE] = StoredCookie(value, clock() + 10**6)


def cookie_of(phone: Simulator, sender: str, to: str) -> str:
    """Return the conversation cookie a pair's jar holds."""
    return phone.jars[(sender, to)][COOKIE].value


def scaled_examples(count: int) -> int:
    """Return `count` examples at the default profile's 100, scaled like the profile in use (--hypothesis-profile)."""
    return max(10, count * hypothesis_settings.default.max_examples // 100)


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


@dataclass
class Shutdown:
    """What a server did when stopped with an idle keep-alive connection open and a webhook in flight."""

    seconds: float  # from the stop signal to the exit
    exit_code: int | None  # None: it had to be killed
    in_flight: tuple[int, str]  # the webhook's status and reply
    idle_closed_at_once: bool  # the idle connection was closed, not left to hold a worker


def stop_during_webhook(
    port: int, phone: Simulator, stop: Callable[[], tuple[float, int | None]]
) -> Shutdown:
    """Call `stop` (signal, wait; return seconds and exit code) while a webhook is half sent."""
    idle = IdleConnection(port)
    in_flight = HalfSentWebhook(port, phone, ALICE)
    time.sleep(0.3)
    outcome = {}
    stopper = threading.Thread(target=lambda: outcome.update(stop=stop()))
    stopper.start()
    time.sleep(1.0)  # the server has the signal; the webhook's last bytes arrive only now
    answer = in_flight.finish()
    idle_closed = idle.closed_by_server(timeout=2)
    stopper.join(30)
    seconds, exit_code = outcome["stop"]
    print(f"\nstopped in {seconds:.1f} s with an idle keep-alive connection and a webhook in flight")
    return Shutdown(seconds, exit_code, answer, idle_closed)


def shell_blocks(page: str, heading: str) -> list[str]:
    """Return the sh code blocks of the section a heading (or its start) opens on a page, as written."""
    text = (REPO / page).read_text(encoding="utf-8")
    section = text.split(f"\n{heading}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def require(tool: str, install: str) -> str:
    """Return the path of a command a test needs; without it skip, saying how to get it, or fail under CI."""
    found = shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    why = f"needs {tool}: {install} (.ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def phone_at(port: int) -> Simulator:
    """A simulated Twilio posting webhooks to a server on 127.0.0.1:port, signed for that URL."""
    return Simulator(HttpTransport(), f"http://127.0.0.1:{port}/sms", token=TOKEN)


def rss_kib(pid: int) -> int:
    """Return a process's resident memory (VmRSS of /proc/<pid>/status) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no VmRSS")


def manifest_memory_limit() -> int:
    """Return the memory limit deploy/kubernetes gives the pod's container, in bytes."""
    import yaml

    deployment = yaml.safe_load((REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    quantity = container["resources"]["limits"]["memory"]
    assert quantity.endswith("Mi"), quantity
    return int(quantity[:-2]) * 2**20


class MemoryCgroup:
    """A cgroup v1 memory group of the test's own, under the test process's, with a memory limit."""

    ROOT = Path("/sys/fs/cgroup/memory")

    def __init__(self, limit: int):
        own = [line for line in Path("/proc/self/cgroup").read_text().splitlines() if ":memory:" in line]
        if os.geteuid() != 0 or not own or not (self.ROOT / "memory.limit_in_bytes").exists():
            why = "needs root and the cgroup v1 memory controller at /sys/fs/cgroup/memory"
            if (
                os.environ.get("CI") == "true"
            ):  # CI runs as root on such a machine: a memory claim goes unmeasured
                pytest.fail(why)
            pytest.skip(why)
        self.path = (
            self.ROOT / own[0].split(":", 2)[2].lstrip("/") / f"test-{os.getpid()}-{time.monotonic_ns()}"
        )
        self.path.mkdir()
        (self.path / "memory.limit_in_bytes").write_text(str(limit))
        if (self.path / "memory.memsw.limit_in_bytes").exists():  # swap accounting on: no swap to hide in
            (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit))
        self.limit = limit

    @property
    def prefix(self) -> tuple[str, ...]:
        """The command prefix that runs a server inside the group."""
        return ("sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh")

    def usage(self) -> int:
        """Return the memory the group's processes are charged now, in bytes (the kernel's sockets included)."""
        return int((self.path / "memory.usage_in_bytes").read_text())

    def oom_kills(self) -> int:
        """Return how many of the group's processes the kernel killed for memory."""
        for line in (self.path / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def remove(self) -> None:
        for pid in (self.path / "cgroup.procs").read_text().split():
            os.kill(int(pid), 9)  # what a stopped server left behind
        wait_for = time.monotonic() + 10
        while time.monotonic() < wait_for:
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
