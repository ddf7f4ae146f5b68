"""Real processes for the integration tests: production instances, nginx in front, and Twilio's traffic."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from helpers import GREETING, SERVICE, TOKEN, production_settings

from devtools.servers import Deadline, Server, free_port, tail
from devtools.simulator import HttpTransport, Simulator

REPO = Path(__file__).resolve().parents[2]
NGINX_TEMPLATE = REPO / "deploy" / "nginx.conf"

# Literal keys live only in test code.
OLD_KEY = "cluster-key-old-5e1b9d2a7c4f8e3b6a0d9c1f"
NEW_KEY = "cluster-key-new-a83c0f6e2d9b4a7c1e5f0b8d"

PUBLIC_HOST = "sms.example.com"
WEBHOOK_URL = f"https://{PUBLIC_HOST}/sms"  # what Twilio signs; nginx plays the TLS terminator
UPSTREAM_OPTIONS = "max_fails=1 fail_timeout=5s"  # as in the README, "Deploy"

COUNT_REPLY = re.compile(r"Hi Friend, this is message #(\d+) in our conversation\.")

# Every other setting is blanked, so a developer's .env in the repository cannot change what is tested.
BLANK_SETTINGS = (
    "SECRET_KEY_FALLBACKS",
    "TWILIO_AUTH_TOKEN_SECONDARY",
    "CONVERSATION_IDLE_SECONDS",
    "CALLERS_FILE",
    "DEFAULT_REGION",
    "GREETING_TEMPLATE",
    "COUNT_REPLY_TEMPLATE",
    "HELP_TEXT",
)


class Instance:
    """One production server, `python serve.py serve` (one worker), on 127.0.0.1:port."""

    def __init__(self, name: str, workdir: Path):
        self.name, self.workdir = name, workdir
        self.port = free_port()
        self.server: Server | None = None
        self.runs = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def environment(self, secret_key: str, fallbacks: str) -> dict:
        return {
            **os.environ,
            **dict.fromkeys(BLANK_SETTINGS, ""),
            **production_settings(
                f"https://{PUBLIC_HOST}",
                SECRET_KEY=secret_key,
                SECRET_KEY_FALLBACKS=fallbacks,
                TRUSTED_PROXIES="1",
                HOST="127.0.0.1",
                PORT=str(self.port),
                WEB_CONCURRENCY="1",
            ),
        }

    def start(self, secret_key: str = OLD_KEY, fallbacks: str = "") -> None:
        """Start (again) on the same port and return at once; each run logs to its own file."""
        assert self.server is None or not self.server.is_running(), f"{self.name} is already running"
        self.runs += 1
        argv = [sys.executable, str(REPO / "serve.py"), "serve"]
        env = self.environment(secret_key, fallbacks)
        self.server = Server(argv, env, self.port, self.log_of_run(), REPO)
        self.server.spawn()

    def wait_healthy(self, timeout: float) -> None:
        self.server.wait_healthy(timeout)

    def webhooks(self) -> list[dict]:
        """The JSON webhook lines of every run of this instance, in order."""
        return [w for run in range(1, self.runs + 1) for w in self.webhooks_of_run(run)]

    def log_of_run(self, run: int | None = None) -> Path:
        """The file one run (default: the current one) writes its output to."""
        return self.workdir / f"{self.name}-run{run or self.runs}.log"

    def webhooks_of_run(self, run: int | None = None) -> list[dict]:
        """The JSON webhook lines one run (default: the current one) logged."""
        text = self.log_of_run(run).read_text(encoding="utf-8", errors="replace")
        records = (json.loads(line) for line in text.split("\n")[:-1] if line.startswith("{"))  # whole lines
        return [r for r in records if r.get("msg") in ("webhook", "webhook refused")]

    def stop(self, grace: float = 25.0) -> int | None:
        """SIGTERM (graceful shutdown), then kill after `grace`; return the exit code or None."""
        self.begin_stop()
        return self.wait_stopped(grace)

    def begin_stop(self) -> None:
        """Send SIGTERM and return at once."""
        if self.server:
            self.server.send_signal(signal.SIGTERM)

    def wait_stopped(self, grace: float = 25.0) -> int | None:
        return self.server.wait_stopped(grace) if self.server else None

    def kill(self) -> None:
        """SIGKILL the whole instance at once, as when its machine or container dies."""
        if self.server:
            self.server.kill()


class Nginx:
    """Debian's nginx from deploy/nginx.conf: plain HTTP on 127.0.0.1, playing the TLS terminator."""

    def __init__(self, binary: str, prefix: Path, upstreams: list[str]):
        self.binary, self.prefix, self.upstreams = binary, prefix, upstreams
        self.port = free_port()
        self.server: Server | None = None
        self.access_log = prefix / "access.log"
        self.error_log = prefix / "error.log"

    def render(self) -> str:
        """Fill deploy/nginx.conf's placeholders the way the tests need them."""
        values = {
            "@PREFIX@": str(self.prefix),
            "@USER@": pwd.getpwuid(os.geteuid()).pw_name,
            "@LISTEN@": f"127.0.0.1:{self.port}",
            "@TLS@": "",
            "@SERVER_NAME@": PUBLIC_HOST,
            "@UPSTREAMS@": " ".join(f"server {a} {UPSTREAM_OPTIONS};" for a in self.upstreams),
            "@FORWARDED_PROTO@": "https",
        }
        text = NGINX_TEMPLATE.read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        leftover = re.findall(r"@[A-Z_]+@", text)
        assert not leftover, f"deploy/nginx.conf has placeholders the tests do not fill: {leftover}"
        return text

    def start(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(self.render(), encoding="utf-8")
        argv = [self.binary, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.error_log)]
        output = self.prefix / "output.log"
        self.server = Server(argv, dict(os.environ), self.port, output, self.prefix, host=PUBLIC_HOST)
        self.server.spawn()

    def wait_ready(self, timeout: float) -> None:
        self.server.wait_healthy(timeout)

    def upstream_tries(self) -> list[list[str]]:
        """For each logged request, the instances nginx tried, in order (several: it was retried)."""
        tries = []
        for line in self.access_log.read_text(encoding="utf-8", errors="replace").splitlines():
            match = re.search(r'upstream="([^"]*)"', line)
            if match and '"POST /sms"' in line:
                tries.append(re.split(r", | : ", match.group(1)))
        return tries

    def stop(self) -> None:
        if self.server:
            self.server.stop(grace=10.0)


def reply_count(text: str) -> int | None:
    """Read the count out of a reply: the greeting is message 1, the count reply says its number."""
    if text == GREETING:
        return 1
    match = COUNT_REPLY.fullmatch(text)
    return int(match.group(1)) if match else None


class Conversations:
    """Many Twilio conversations through one URL: pairs interleave, each pair's messages stay in order."""

    def __init__(self, target: str, pairs: int = 200, messages: int | None = 10, workers: int = 16):
        self.phone = Simulator(HttpTransport(target), WEBHOOK_URL, token=TOKEN)
        self.senders = [f"+1500556{i:04d}" for i in range(pairs)]
        self.messages = messages  # None: keep going until stop()
        self.sent_by_pair = Counter()
        self.problems: list[str] = []
        self.sent = 0
        self.progress = threading.Condition()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self.play, args=(self.senders[i::workers],), daemon=True)
            for i in range(min(workers, pairs))
        ]

    def start(self) -> Conversations:
        for thread in self.threads:
            thread.start()
        return self

    def play(self, senders: list[str]) -> None:
        """Send message 1 of each of these pairs, then message 2 of each, and so on."""
        n = 0
        while not self.stopping.is_set() and (self.messages is None or n < self.messages):
            n += 1
            for sender in senders:
                self.exchange(sender, n)

    def exchange(self, sender: str, n: int) -> None:
        """Send message n of a pair and check that the reply counts exactly n."""
        try:
            reply = self.phone.send(f"message {n}", sender, SERVICE)
            status, text = reply.status, reply.text
        except Exception as exc:  # a lost request is a finding, not a crash of the traffic
            status, text = 0, repr(exc)
        problem = ""
        if status != 200:
            problem = f"{sender} message {n}: status {status} {text[:120]!r}"
        elif reply_count(text) != n:
            problem = f"{sender} message {n}: reply {text!r}"
        with self.progress:
            self.sent += 1
            self.sent_by_pair[sender] += 1
            if problem:
                self.problems.append(problem)
            self.progress.notify_all()

    def wait_for(self, sent: int, timeout: float) -> None:
        """Wait until `sent` messages have been answered in all."""
        with self.progress:
            if not self.progress.wait_for(lambda: self.sent >= sent, timeout):
                raise AssertionError(f"only {self.sent} of {sent} messages answered after {timeout:.0f} s")

    def snapshot(self) -> Counter:
        with self.progress:
            return Counter(self.sent_by_pair)

    def stop(self) -> None:
        self.stopping.set()

    def join(self, timeout: float) -> None:
        """Wait for every conversation to finish (after stop() when they run until stopped)."""
        end = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, end - time.monotonic()))
        running = sum(t.is_alive() for t in self.threads)
        assert not running, (
            f"{running} traffic threads still running after {timeout:.0f} s ({self.sent} sent)"
        )

    def summary(self) -> str:
        shown = "\n".join(self.problems[:10])
        return f"{len(self.problems)} problems in {self.sent} messages, first ones:\n{shown}"


class Cluster:
    """Production instances behind nginx on 127.0.0.1; everything started here is stopped by close()."""

    def __init__(self, workdir: Path, nginx: str, instances: int = 2):
        self.workdir = workdir
        self.instances = [Instance(f"instance{i + 1}", workdir) for i in range(instances)]
        self.nginx = Nginx(nginx, workdir / "nginx", [i.address for i in self.instances])
        self.traffic: list[Conversations] = []

    @property
    def target(self) -> str:
        return f"http://127.0.0.1:{self.nginx.port}"

    def start(self, timeout: float = 60.0) -> None:
        deadline = Deadline(timeout)
        for instance in self.instances:
            instance.start()
        self.nginx.start()
        for instance in self.instances:
            instance.wait_healthy(deadline.left())
        self.nginx.wait_ready(deadline.left())

    def conversations(self, **options) -> Conversations:
        """Start Twilio's traffic through nginx; close() stops it if the test did not."""
        traffic = Conversations(self.target, **options)
        self.traffic.append(traffic)
        return traffic.start()

    def close(self) -> None:
        for traffic in self.traffic:
            traffic.stop()
        self.nginx.stop()  # traffic still running now fails fast, then ends
        for traffic in self.traffic:
            with contextlib.suppress(AssertionError):
                traffic.join(30.0)
        for instance in self.instances:
            instance.stop(grace=10.0)

    def report(self) -> str:
        """The tails of every log, for a failed test's output."""
        parts = [f"--- {log.name}\n{tail(log)}" for log in sorted(self.workdir.glob("*.log"))]
        parts.append(f"--- nginx error.log\n{tail(self.nginx.error_log)}")
        parts.append(f"--- nginx access.log\n{tail(self.nginx.access_log, 10)}")
        return "\n".join(parts)
