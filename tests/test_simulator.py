"""The simulated Twilio: parameters, signatures and the cookie jar behave as Twilio's do."""

import re
from email.utils import formatdate
from urllib.parse import parse_qsl

import pytest
from flask import Flask, request
from helpers import ALICE, BOB, SERVICE, TOKEN, echoed
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


# Twilio's default replies, as its support article quotes them (not imported from the simulator).
STOP_CONFIRMATION = (
    "You have successfully been unsubscribed. You will not receive any more messages from this number. "
    "Reply START to resubscribe."
)
START_CONFIRMATION = (
    "You have successfully been re-subscribed to messages from this number. Reply HELP for help. "
    "Reply STOP to unsubscribe. Msg&Data Rates May Apply."
)
HELP_REPLY = "Reply STOP to unsubscribe. Msg&Data Rates May Apply."


@pytest.fixture
def echo_app():
    """A webhook that records what reached it and always answers one message."""
    app = Flask(__name__)
    app.reached = []

    @app.post("/hook")
    def hook():
        app.reached.append(dict(request.form))
        return '<?xml version="1.0" encoding="UTF-8"?><Response><Message>echo</Message></Response>'

    return app


@pytest.mark.parametrize(
    "word", ["STOP", "stop", " Unsubscribe ", "CANCEL", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT"]
)
def test_stop_opts_the_pair_out_and_twilio_confirms_while_the_webhook_still_hears_it(echo_app, word):
    phone = Simulator(FlaskTransport(echo_app), "http://localhost/hook")
    reply = phone.send(word, ALICE, SERVICE)
    assert reply.twilio_replies == [STOP_CONFIRMATION]
    assert echo_app.reached[-1]["Body"] == word and "OptOutType" not in echo_app.reached[-1]
    assert reply.delivered == [] and reply.blocked == ["echo"]
    assert phone.is_opted_out(ALICE, SERVICE) and not phone.is_opted_out(BOB, SERVICE)


def test_while_opted_out_every_message_reaches_the_webhook_and_no_reply_is_delivered(echo_app):
    phone = Simulator(FlaskTransport(echo_app), "http://localhost/hook")
    phone.send("STOP", ALICE, SERVICE)
    for body in ["hello?", "HELP", "stop texting me"]:
        reply = phone.send(body, ALICE, SERVICE)
        assert reply.blocked == ["echo"] and reply.delivered == [] and reply.twilio_replies == []
    assert [m["Body"] for m in echo_app.reached] == ["STOP", "hello?", "HELP", "stop texting me"]
    assert phone.send("hi", BOB, SERVICE).delivered == ["echo"]  # other pairs are not affected


@pytest.mark.parametrize("word", ["START", "yes", "UNSTOP"])
def test_start_opts_back_in_and_twilio_confirms(echo_app, word):
    phone = Simulator(FlaskTransport(echo_app), "http://localhost/hook")
    phone.send("STOP", ALICE, SERVICE)
    reply = phone.send(word, ALICE, SERVICE)
    assert reply.twilio_replies == [START_CONFIRMATION] and reply.delivered == ["echo"]
    assert not phone.is_opted_out(ALICE, SERVICE)


def test_help_gets_twilios_reply_and_the_services(echo_app):
    phone = Simulator(FlaskTransport(echo_app), "http://localhost/hook")
    reply = phone.send("info", ALICE, SERVICE)
    assert reply.twilio_replies == [HELP_REPLY] and reply.delivered == ["echo"]
    assert phone.send("stop now", ALICE, SERVICE).twilio_replies == []  # not a single keyword


def test_advanced_opt_out_sends_opt_out_type_and_its_own_texts(echo_app):
    from devtools.simulator import OptOutTexts

    texts = OptOutTexts(
        stop="Bye from Example Co.", start="Welcome back to Example Co.", help="Example Co help"
    )
    phone = Simulator(FlaskTransport(echo_app), "http://localhost/hook", advanced_opt_out=texts)
    assert phone.send("STOP", ALICE, SERVICE).twilio_replies == ["Bye from Example Co."]
    assert echo_app.reached[-1]["OptOutType"] == "STOP"
    assert phone.send("yes", ALICE, SERVICE).twilio_replies == ["Welcome back to Example Co."]
    assert echo_app.reached[-1]["OptOutType"] == "START"
    assert phone.send("help", ALICE, SERVICE).twilio_replies == ["Example Co help"]
    assert echo_app.reached[-1]["OptOutType"] == "HELP"
    phone.send("hello", ALICE, SERVICE)
    assert "OptOutType" not in echo_app.reached[-1]


def test_the_service_sends_nothing_on_stop_or_start_so_there_is_no_double_confirmation(twilio):
    twilio.send("hello", ALICE, SERVICE)
    for word, confirmation in [("STOP", STOP_CONFIRMATION), ("START", START_CONFIRMATION)]:
        reply = twilio.send(word, ALICE, SERVICE)
        assert reply.messages == [] and reply.twilio_replies == [confirmation]
    assert twilio.send("hi", ALICE, SERVICE).delivered == [echoed(1, "hi")]


def test_the_service_reply_to_an_opted_out_phone_is_blocked(twilio):
    twilio.send("STOP", ALICE, SERVICE)
    reply = twilio.send("hi again", ALICE, SERVICE)
    assert reply.blocked == [echoed(1, "hi again")] and reply.delivered == []
