"""The load: Twilio-signed conversations precomputed for wrk, wrk runs, and a signature pre-flight check.

A signature covers the URL and the form parameters but not the cookie, so every webhook can be signed
ahead of time, for PUBLIC_URL + "/sms" (bench/variants.py): the service is configured with that
PUBLIC_URL, as a deployed one is (README, "Deploy"), so it checks exactly that URL on any free port and
one data set serves every server.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from bench.procs import HarnessError
from bench.variants import PUBLIC_URL, ROOT, sender
from devtools.servers import popen, stop
from devtools.simulator import Simulator, sign

SIGNED_URL = PUBLIC_URL + "/sms"
SCRIPT = Path(__file__).resolve().parent / "conversations.lua"
SERVICE_NUMBERS = ("+14155550100", "+14155550101", "+14155550102", "+14155550103")
ACCOUNT_SID = "AC" + "b3" * 16
PHRASES = ("hello there", "what's up?", "on my way", "see you at 6", "thanks!", "ok 👍", "call me later")


def recipient(i: int) -> str:
    return SERVICE_NUMBERS[i % len(SERVICE_NUMBERS)]


@dataclass(frozen=True)
class Dataset:
    """Signed webhooks split over `threads` files (wrk runs one connection per thread)."""

    prefix: Path
    threads: int
    pairs: int
    messages: int  # per pair

    @property
    def requests(self) -> int:
        return self.pairs * self.messages


def write_dataset(
    prefix: Path, token: str, first_pair: int, pairs: int, messages: int, threads: int
) -> Dataset:
    """Sign `messages` webhooks for each of `pairs` (From, To) pairs into one file per wrk thread.

    Thread t gets every pair whose position modulo `threads` is t, in send order: message 1 of each of
    its pairs, then message 2 of each, and so on. Every message has its own MessageSid.
    """
    phone = Simulator(transport=None, url=SIGNED_URL, token=token, account_sid=ACCOUNT_SID)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for t in range(threads):
        mine = range(first_pair + t, first_pair + pairs, threads)
        with open(f"{prefix}-{t}.tsv", "w", encoding="utf-8") as out:
            for m in range(messages):
                for i in mine:
                    body = f"{PHRASES[(i + m) % len(PHRASES)]} {m + 1}"
                    params = phone.params(body, sender(i), recipient(i), sid=f"SM{i:016x}{m:016x}")
                    signature = sign(token, SIGNED_URL, params)
                    out.write(f"{i}\t{signature}\t{urlencode(params)}\n")
    return Dataset(prefix, threads, pairs, messages)


@dataclass
class WrkResult:
    """What wrk measured, and what the Lua script checked, in one run."""

    data: dict
    seconds: float

    @property
    def requests(self) -> int:
        return self.data["requests"]

    @property
    def rps(self) -> float:
        """Answers per second over the span the load really lasted (see conversations.lua)."""
        return self.data["requests"] / (self.data["span_us"] / 1e6)

    def latency_ms(self, key: str) -> float:
        return self.data["latency_us"][key] / 1000

    def problems(self, counts: bool, roundtrips: bool = True, replayed: bool = False) -> list[str]:
        """Return why this run cannot be trusted (errors, non-2xx answers, cookies not round-tripping)."""
        found = [f"{n} {kind} errors" for kind, n in self.data["errors"].items() if n]
        if self.data["bad_status"]:
            found.append(f"{self.data['bad_status']} non-2xx answers, e.g. {self.data['bad_sample']!r}")
        if self.data["answered"] == 0:
            found.append("no answers")
        if counts and self.data["mismatches"]:
            found.append(f"{self.data['mismatches']} replies stated a count the cookie could not have given")
        if counts and replayed and self.data["roundtrips"] < 0.95 * self.data["cookied"]:
            found.append(  # a few sent with a cookie are still in flight when wrk stops
                f"only {self.data['roundtrips']} replies counted past message 1 of {self.data['cookied']}"
                " webhooks sent with a recorded cookie: the cookies were refused"
            )
        if counts and roundtrips and not self.data["roundtrips"]:
            found.append("no reply counted past message 1: cookies did not round-trip")
        return found


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if not path:
        raise HarnessError("wrk is not installed (make bench installs it with apt-get)")
    return path


def run_wrk(
    port: int,
    dataset: Dataset,
    seconds: float,
    mode: str = "loop",
    counts: bool = True,
    rate: float = 0,
    connections: int = 0,
) -> WrkResult:
    """Drive the server with the conversations; "once" sends every message once, then stops.

    With a `rate` (requests/s), the threads are paced to offer exactly that load; otherwise each sends its
    next message as soon as the answer to the last one came (a closed loop: the server is saturated).
    More `connections` than the data set's threads need mode "replay" (bench/replay.py).
    """
    if mode == "once":
        for marker in dataset.prefix.parent.glob(f"{dataset.prefix.name}.done-*"):
            marker.unlink()
    n = dataset.threads
    command = [
        wrk_binary(), f"-t{n}", f"-c{max(n, connections)}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(SCRIPT),
        f"http://127.0.0.1:{port}/sms", "--", str(dataset.prefix), mode, "counts" if counts else "none",
        f"{rate:g}", str(n),
    ]  # fmt: skip
    started = time.perf_counter()
    process = popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        if mode == "once":
            while process.poll() is None:
                done = list(dataset.prefix.parent.glob(f"{dataset.prefix.name}.done-*"))
                if len(done) == n:
                    process.send_signal(signal.SIGINT)  # wrk sleeps for -d; SIGINT ends it with done()
                    break
                time.sleep(0.1)
        output, _ = process.communicate(timeout=seconds + 60)
    finally:
        stop(process)
    elapsed = time.perf_counter() - started
    text = output.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("BENCH_RESULT "):
            return WrkResult(json.loads(line.removeprefix("BENCH_RESULT ")), elapsed)
    raise HarnessError(f"wrk gave no result (exit {process.returncode}):\n{text[-2000:]}")


def post(port: int, params: dict, signature: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "POST",
            "/sms",
            body=urlencode(params),
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def preflight(port: int, token: str, checks_signatures: bool) -> None:
    """One signed webhook must get 200 TwiML; for the service, a wrongly signed one must get 403."""
    phone = Simulator(transport=None, url=SIGNED_URL, token=token, account_sid=ACCOUNT_SID)
    params = phone.params("preflight", "+15559990000", SERVICE_NUMBERS[0])
    status, body = post(port, params, sign(token, SIGNED_URL, params))
    if status != 200 or not body.startswith(b"<?xml"):
        raise HarnessError(f"a correctly signed webhook got {status} {body[:200]!r}")
    if checks_signatures:
        forged = sign("f" * 32, SIGNED_URL, params)
        status, body = post(port, params, forged)
        if status != 403:
            raise HarnessError(f"a wrongly signed webhook got {status}, not 403: signatures are not checked")
