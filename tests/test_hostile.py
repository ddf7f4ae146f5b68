"""Hostile input is refused cheaply: forged floods cost a bounded multiple of a valid webhook."""

import time
from urllib.parse import urlencode

import pytest
from helpers import ALICE, SERVICE, TOKEN, WEBHOOK_URL

from devtools.simulator import Simulator

FORM = "application/x-www-form-urlencoded"


def cpu_per_request(client, requests) -> float:
    """Return the CPU seconds per request of one pass through `requests`."""
    started = time.process_time()
    for body, headers in requests:
        answer = client.post(
            "/sms", base_url="https://sms.example.com", data=body, headers=headers, content_type=FORM
        )
        assert answer.status_code in (200, 403)
    return (time.process_time() - started) / len(requests)


def cost_ratio(client, forged, valid, rounds=7) -> float:
    """Return the median over interleaved rounds of forged cost / valid cost (steady on a busy machine)."""
    ratios = sorted(cpu_per_request(client, forged) / cpu_per_request(client, valid) for _ in range(rounds))
    return ratios[len(ratios) // 2]


def forged_bodies(shape: str, count: int) -> list[bytes]:
    """Forged webhooks of at most 64 KiB, each with its own fields, shaped to cost the most."""
    bodies = []
    for n in range(count):
        base = {"From": ALICE, "To": SERVICE, "MessageSid": f"SM{n:032x}", "AccountSid": "AC" + "1" * 32}
        if shape == "many fields":  # as many distinct fields as the limit allows
            fields = base | {f"F{n}_{i}": "" for i in range(250)}
        elif shape == "most escapes":  # as many %XX as the limit allows (decoding is the costly part)
            fields = base | {"Body": "é" * 4_000 + str(n)}
        else:  # a body that fills the 64 KiB limit
            fields = base | {"Body": "x" * 65_000 + str(n)}
        body = urlencode(fields).encode()
        assert len(body) <= 64 * 1024
        bodies.append(body)
    return bodies


@pytest.mark.server  # a timing ratio: a slow test, outside the fast suite
@pytest.mark.parametrize("shape", ["many fields", "most escapes", "64 KiB"])
@pytest.mark.parametrize("forwarded", [False, True], ids=["direct", "x-forwarded"])
def test_a_forged_webhook_costs_at_most_five_valid_ones(make_app, shape, forwarded):
    app = make_app(TRUSTED_PROXIES="1" if forwarded else "0")
    client = app.test_client()
    phone = Simulator(transport=None, url=WEBHOOK_URL, token=TOKEN)
    valid = []
    for n in range(40):
        _, signed, body = phone.prepare(phone.params(f"hello {n}", f"+1500555{n:04d}", SERVICE), "")
        valid.append((body, {"X-Twilio-Signature": signed["X-Twilio-Signature"]}))
    headers = {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
    if forwarded:
        headers |= {
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Port": "8443",
        }
    forged = [(body, headers) for body in forged_bodies(shape, 40)]
    assert client.post("/sms", data=forged[0][0], headers=headers, content_type=FORM).status_code == 403

    ratio = cost_ratio(client, forged, valid)
    print(f"{shape}: a forged webhook costs {ratio:.2f}x a valid one")
    assert ratio <= 5, f"a forged webhook costs {ratio:.1f}x a valid one"


def test_more_percent_escapes_than_twilio_sends_are_refused_before_decoding(app):
    body = urlencode({"From": ALICE, "To": SERVICE, "Body": "é" * 4_100})  # 8,200 escapes, 25 KiB
    answer = app.test_client().post("/sms", data=body, content_type=FORM, headers={"X-Twilio-Signature": "x"})
    assert answer.status_code == 413 and "percent-escapes" in answer.get_data(as_text=True)


def test_the_largest_body_twilio_sends_is_answered(twilio):
    assert twilio.send("😀" * 1600, ALICE, SERVICE).status == 200
