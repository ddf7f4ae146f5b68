"""The simulated Twilio: parameters, signatures and the cookie jar behave as Twilio's do."""

import re
from email.utils import formatdate
from urllib.parse import parse_qsl

import pytest
from conftest import ALICE, BOB, SERVICE, TOKEN
from flask import Flask, request
from twilio.request_validator import RequestValidator

from devtools.simulator import FlaskTransport, Simulator, parse_duration, segment_count


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters take two GSM-7 units
        ("€" * 81, 2),
        ("é" * 160, 1),  # é is in the GSM-7 basic set
        ("ć" * 70, 1),  # ć is not: UCS-2
        ("ć" * 71, 2),
        ("😀" * 35, 1),  # a surrogate pair is two UCS-2 units
        ("😀" * 36, 2),
    ],
)
def test_segment_counts_follow_gsm7_and_ucs2(body, segments):
    assert segment_count(body) == segments


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("4h", 14400), ("4h30m", 16200), ("2", 2)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "4x", "h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parameters_look_like_twilios(twilio):
    params = twilio.params("héllo", ALICE, SERVICE)
    assert re.fullmatch(r"SM[0-9a-f]{32}", params["MessageSid"])
    assert params["SmsSid"] == params["SmsMessageSid"] == params["MessageSid"]
    assert re.fullmatch(r"AC[0-9a-f]{32}", params["AccountSid"])
    assert params["NumMedia"] == "0" and params["NumSegments"] == "1" and params["SmsStatus"] == "received"
    assert params["ApiVersion"] == "2010-04-01" and params["FromCity"] == "" and params["ToZip"] == ""
    media = twilio.params("", ALICE, SERVICE, media=["https://example.com/a.jpg"])
    assert media["MessageSid"].startswith("MM") and media["NumMedia"] == "1"
    assert media["MediaUrl0"] == "https://example.com/a.jpg" and media["MediaContentType0"] == "image/jpeg"
    assert twilio.params("x", ALICE, SERVICE)["MessageSid"] != params["MessageSid"]


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("url", ["https://sms.example.com/sms", "https://sms.example.com/sms?campaign=1"])
def test_signatures_verify_with_request_validator(twilio, method, url):
    twilio.method, twilio.url = method, url
    signed_url, headers, body = twilio.prepare(twilio.params("hi", ALICE, SERVICE), "")
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    assert RequestValidator(TOKEN).validate(signed_url, params, headers["X-Twilio-Signature"])
    assert not RequestValidator("f" * 32).validate(signed_url, params, headers["X-Twilio-Signature"])


@pytest.fixture
def cookie_app():
    """A webhook that sets whatever cookie the test asks for, and echoes the cookies it got."""
    app = Flask("cookies")

    @app.post("/hook")
    def hook():
        status = int(request.form.get("Status", "200"))
        response = app.response_class(request.headers.get("Cookie", ""), status=status)
        if request.form.get("SetCookie"):
            response.headers["Set-Cookie"] = request.form["SetCookie"]
        return response

    return app


def phone_for(app, clock):
    return Simulator(FlaskTransport(app), "http://localhost/hook")


def send(phone, sender=ALICE, set_cookie="", status=200):
    params = phone.params("hi", sender, SERVICE)
    params.update(SetCookie=set_cookie, Status=str(status))
    return phone.deliver(params)


def test_one_jar_per_number_pair_and_one_value_per_cookie(cookie_app, clock):
    phone = phone_for(cookie_app, clock)
    send(phone, ALICE, "c=alice1; Max-Age=100")
    send(phone, ALICE, "c=alice2; Max-Age=100")
    send(phone, BOB, "c=bob1; Max-Age=100")
    assert phone.cookie_header(ALICE, SERVICE) == "c=alice2"
    assert send(phone, BOB).body == b"c=bob1"


@pytest.mark.parametrize(
    ("max_age", "alive_at", "gone_at"),
    [(60, 59, 61), (86_400, 4 * 3600 - 1, 4 * 3600 + 1)],  # Twilio caps every cookie at 4 hours
)
def test_max_age_is_honoured_and_capped_at_four_hours(cookie_app, clock, max_age, alive_at, gone_at):
    phone = phone_for(cookie_app, clock)
    send(phone, set_cookie=f"c=v; Max-Age={max_age}")
    clock.advance(alive_at)
    assert phone.cookie_header(ALICE, SERVICE) == "c=v"
    clock.advance(gone_at - alive_at)
    assert phone.cookie_header(ALICE, SERVICE) == ""


def test_expires_is_honoured_and_max_age_zero_deletes(cookie_app, clock):
    phone = phone_for(cookie_app, clock)
    send(phone, set_cookie=f"c=v; Expires={formatdate(clock() + 120, usegmt=True)}")
    clock.advance(100)
    assert phone.cookie_header(ALICE, SERVICE) == "c=v"
    clock.advance(30)
    assert phone.cookie_header(ALICE, SERVICE) == ""
    send(phone, set_cookie="c=v; Max-Age=100")
    send(phone, set_cookie="c=; Max-Age=0")
    assert phone.cookie_header(ALICE, SERVICE) == ""


def test_cookies_from_failed_answers_are_not_kept(cookie_app, clock):
    phone = phone_for(cookie_app, clock)
    send(phone, set_cookie="c=v; Max-Age=100", status=500)
    assert phone.cookie_header(ALICE, SERVICE) == ""
