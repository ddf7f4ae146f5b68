"""How flat: CPU per message and cookie size deep into one conversation, and server memory over many pairs.

CPU and cookie run in a child process (`python -m bench.growth`, settings as JSON on stdin, results as
JSON on stdout) against responder.create_app() through Flask's test client, played by devtools'
Simulator: it signs every webhook (verified by the service) and keeps each pair's cookie jar, so every
message brings exactly the cookie the service set on the previous reply, and message 100,000 is really
the 100,000th message of its conversation. Only the app's handling of each webhook (the transport) is
timed, not the signing or the jar. The four windows (message 1 and message 2 of fresh conversations,
around message 1,000 and around message 100,000; 1,000 messages each) are measured in interleaved
chunks of 100 so drift cancels out, and the least disturbed chunk of each window gives its CPU per
message. Message 2 is the first to bring a cookie to verify, so CPU growth is measured from it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.load import ACCOUNT_SID, SIGNED_URL, Dataset, run_wrk
from bench.procs import HarnessError, worker_memory_kib
from bench.variants import BIN, ROOT, BenchSettings
from devtools.servers import free_port, running
from devtools.simulator import FlaskTransport, Simulator

COUNT = re.compile(rb"#(\d+)")


@dataclass
class Thread:
    """One conversation: the pair, and how many messages it has sent."""

    sender: str
    to: str
    sent: int = 0


class TimedTransport(FlaskTransport):
    """Deliver to the app in-process, keeping the CPU seconds the last delivery took in `cpu`."""

    cpu = 0.0

    def request(self, method: str, url: str, headers: dict, body: bytes):
        """Deliver one request and time it."""
        started = time.process_time()
        answer = super().request(method, url, headers, body)
        self.cpu = time.process_time() - started
        return answer


class Twilio:
    """Play Twilio toward the app in-process: devtools' Simulator signs and keeps the cookie jars."""

    def __init__(self, app, token: str):
        self.transport = TimedTransport(app)
        self.sim = Simulator(self.transport, SIGNED_URL, token=token, account_sid=ACCOUNT_SID)
        self.sids = 0

    def send(self, thread: Thread) -> tuple[int, bytes, float]:
        """Send the thread's next message; return the status, the body and the app's CPU seconds."""
        self.sids += 1
        reply = self.sim.send(f"hello {self.sids}", thread.sender, thread.to, sid=f"SM{self.sids:032x}")
        thread.sent += 1
        return reply.status, reply.body, self.transport.cpu


def stated_count(body: bytes) -> int:
    """The count a reply states ("#N"); the greeting (message 1) states none."""
    match = COUNT.search(body)
    return int(match.group(1)) if match else 1


def measure(overrides: dict, token: str, depth: int, window: int, chunks: int) -> dict:
    from responder import create_app

    app = create_app(overrides)
    # The JSON log lines go to this process's stderr, a pipe cpu_and_cookie reads, as in production.
    twilio = Twilio(app, token)

    deep = {1000: Thread("+15005551000", "+14155550100"), depth: Thread("+15005551001", "+14155550100")}
    positions = [1, 2, *deep]
    climb_started = time.perf_counter()
    for target, thread in deep.items():
        while thread.sent < target - window // 2:
            status, body, _ = twilio.send(thread)
            if status != 200:
                raise SystemExit(f"message {thread.sent} got {status}: {body[:200]!r}")
    climb_seconds = time.perf_counter() - climb_started

    size = window // chunks
    cpu: dict[int, list[float]] = {p: [] for p in positions}
    cookie_bytes: dict[int, int] = {}
    fresh = 0
    for c in range(chunks):
        order = positions[c % len(positions) :] + positions[: c % len(positions)]
        for position in order:
            if position in deep:
                threads = [deep[position]] * size
            else:  # message 1 or 2: new conversations for every sample, brought there unmeasured
                threads = [Thread(f"+1500556{fresh + k:04d}", "+14155550101") for k in range(size)]
                fresh += size
                for thread in threads:
                    while thread.sent < position - 1:
                        twilio.send(thread)
            answers = [(*twilio.send(t), twilio.sim.cookie_size(t.sender, t.to)) for t in threads]
            cpu[position].append(sum(seconds for _, _, seconds, _ in answers) / size)
            for k, (status, body, _, cookie_size) in enumerate(answers):
                expected = threads[0].sent - size + k + 1 if position in deep else position
                if status != 200 or stated_count(body) != expected:
                    raise SystemExit(f"expected message #{expected}, got {status} {body[:200]!r}")
                if expected == position:
                    cookie_bytes[position] = cookie_size  # what Twilio sends back: name=value
    return {
        # Other work on the machine only ever adds CPU time (shared caches, SMT siblings), so like timeit
        # take the least disturbed chunk; every chunk is reported too.
        "cpu_ms": {str(p): min(v) * 1000 for p, v in cpu.items()},
        "cpu_ms_chunks": {str(p): [round(x * 1000, 4) for x in v] for p, v in cpu.items()},
        "cookie_bytes": {str(p): cookie_bytes[p] for p in positions},
        "climb_seconds": climb_seconds,
        "chunk": size,
    }


# ---- the harness side ----------------------------------------------------------------------


def cpu_and_cookie(settings: BenchSettings, depth: int, window: int = 1000, chunks: int = 10) -> dict:
    """Run measure() in a fresh child process with the production settings."""
    spec = {
        "overrides": settings.service_overrides(),
        "token": settings.auth_token,
        "depth": depth,
        "window": window,
        "chunks": chunks,
    }
    child = subprocess.run(
        [str(BIN / "python"), "-m", "bench.growth"],
        input=json.dumps(spec).encode(),
        capture_output=True,
        cwd=ROOT,
        check=False,
        timeout=900,
    )
    if child.returncode != 0:
        raise HarnessError(f"growth measurement failed:\n{child.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(child.stdout)


def server_rss(settings: BenchSettings, out: Path, few: Dataset, many: Dataset) -> dict:
    """Worker RSS of the shipped server (one worker) after `few.pairs` and after all distinct pairs."""
    port = free_port()
    command, env = [str(BIN / "python"), "serve.py", "serve"], settings.service_env(port, workers=1)
    with running(command, env, ROOT, out / "server-rss.log", port) as server:
        rss = {}
        for dataset in (few, many):
            result = run_wrk(port, dataset, seconds=600, mode="once", counts=True)
            problems = result.problems(counts=True, roundtrips=dataset.messages > 1)
            if result.data["answered"] != dataset.requests:
                problems.append(f"{result.data['answered']} of {dataset.requests} webhooks answered")
            if problems:
                raise HarnessError(f"memory growth run: {'; '.join(problems)}\n{server.log_tail()}")
            rss[dataset.pairs] = worker_memory_kib(server.pids(), "VmRSS")
        peak = worker_memory_kib(server.pids(), "VmHWM")
    return {"rss_kib": {"few": rss[few.pairs], "many": rss[many.pairs]}, "peak_kib": peak}


def main() -> None:
    spec = json.load(sys.stdin)
    result = measure(spec["overrides"], spec["token"], spec["depth"], spec["window"], spec["chunks"])
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
