"""/metrics across the production server's workers: every scrape sums them all, a restart loses nothing."""

import http.client
import os
import signal
import time
from urllib.parse import urlencode

import pytest
from conftest import SECRET, SERVICE, TOKEN
from live_server import running_server
from prometheus_client.parser import text_string_to_metric_families

from devtools.servers import wait_until
from devtools.simulator import Simulator, sign

pytestmark = pytest.mark.server

REPLIES, STOPS, FORGED = 70, 10, 20


def post(port: int, params: dict, signature: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:  # a new connection each time, so the workers share the traffic
        body = urlencode(params)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
        connection.request("POST", "/sms", body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def webhook_counts(port: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return {
        s.labels["outcome"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "responder_webhooks_total"
    }


def test_counts_are_exact_on_every_scrape_and_survive_a_worker_restart(tmp_path):
    env = {
        "RESPONDER_ENV": "production",
        "SECRET_KEY": SECRET,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "WEB_CONCURRENCY": "2",
    }
    with running_server("serve", env, tmp_path / "server.log") as server:
        url = f"http://127.0.0.1:{server.port}/sms"
        phone = Simulator(transport=None, url=url, token=TOKEN)
        statuses = []
        for i in range(REPLIES + STOPS + FORGED):
            params = phone.params("STOP" if i < STOPS else f"hello {i}", f"+1500555{i:04d}", SERVICE)
            signature = "forged" if i >= REPLIES + STOPS else sign(TOKEN, url, params)
            statuses.append(post(server.port, params, signature))
        assert statuses.count(200) == REPLIES + STOPS and statuses.count(403) == FORGED

        expected = {"reply": REPLIES, "keyword_stop": STOPS, "refused_signature": FORGED}
        for _ in range(5):
            assert webhook_counts(server.port) == expected

        workers = server.pids()[1:]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGTERM)  # the master starts a new worker in its place
        wait_until(
            lambda: len(server.pids()[1:]) == 2 and workers[0] not in server.pids(), 20, "a new worker"
        )
        time.sleep(0.5)
        for _ in range(5):
            assert webhook_counts(server.port) == expected
