"""A flood of forged webhooks, each as costly as the limits allow, barely delays the valid ones."""

from __future__ import annotations

import statistics
import threading
import time
from urllib.parse import urlencode

import pytest
from helpers import ALICE, SERVICE, TOKEN, running_server, served_settings

from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(
        "serve", served_settings(2), tmp_path_factory.mktemp("flood") / "server.log"
    ) as server:
        yield server.port


def post(port: int, body: str, signature: str) -> tuple[int, float]:
    """Post a form body with a signature on a new connection; return the status and the seconds it took."""
    started = time.monotonic()
    headers = {"Content-Type": FORM, "X-Twilio-Signature": signature, "X-Forwarded-Proto": "https"}
    status, _, _ = HttpTransport().request("POST", f"http://127.0.0.1:{port}/sms", headers, body.encode())
    return status, time.monotonic() - started


def valid_latencies(port: int, count: int) -> list[float]:
    phone = Simulator(HttpTransport(timeout=10), f"http://127.0.0.1:{port}/sms", token=TOKEN)
    seconds = []
    for i in range(count):
        started = time.monotonic()
        assert phone.send(f"hello {i}", f"+1500556{i:04d}", SERVICE).status == 200
        seconds.append(time.monotonic() - started)
        time.sleep(0.05)
    return seconds


def test_forged_webhooks_at_twenty_a_second_barely_delay_valid_ones(server):
    quiet = statistics.median(valid_latencies(server, 20))
    forged = [
        urlencode({"From": ALICE, "To": SERVICE, "MessageSid": f"SM{n:032x}", "Body": "é" * 4_000})
        for n in range(60)
    ] + [urlencode({"From": ALICE, "To": SERVICE} | {f"F{n}_{i}": "" for i in range(250)}) for n in range(60)]
    refused = []

    def flood() -> None:
        for body in forged:  # 20 a second for about 6 s, each at the most costly size the limits allow
            refused.append(post(server, body, "bm90IGEgc2lnbmF0dXJl")[0])
            time.sleep(0.05)

    flooding = threading.Thread(target=flood)
    flooding.start()
    loud = statistics.median(valid_latencies(server, 40))
    flooding.join(30)
    assert set(refused) == {403} and len(refused) == len(forged)
    print(f"valid webhook median: {quiet * 1000:.1f} ms quiet, {loud * 1000:.1f} ms under the forged flood")
    assert loud < max(5 * quiet, 0.05)
