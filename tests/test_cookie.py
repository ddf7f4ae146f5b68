"""The signed conversation cookie: what it holds, how it fails safe, rotation, expiry and size."""

import base64
import json

import pytest
from helpers import ALICE, BOB, OTHER_SECRET, SECRET, SERVICE, TOKEN, cookie_of, echoed, plant_cookie

from devtools.simulator import FlaskTransport, Simulator, cookie_payload
from turn import fingerprint

payload = cookie_payload


def talk(phone, n, sender=ALICE, to=SERVICE):
    for i in range(n):
        reply = phone.send(f"message {i}", sender, to)
    return reply


def test_the_cookie_holds_no_names_bodies_or_raw_numbers(make_app, make_phone, tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada Lovelace\n")
    phone = make_phone(make_app(CALLERS_FILE=str(directory)))
    phone.send("meet me at the usual place", ALICE, SERVICE)
    cookie = cookie_of(phone, ALICE, SERVICE)
    decoded = json.dumps(payload(cookie))
    for secret in ["Ada", "usual place", ALICE, ALICE[1:], SERVICE[1:], "5550101"]:
        assert secret not in decoded and secret not in cookie
    assert set(payload(cookie)) == {"v", "p", "c", "n", "m", "t", "s"}
    assert payload(cookie)["v"] == 3 and payload(cookie)["n"] == 1 and payload(cookie)["s"] == {"turns": 1}


def forged(app, data):
    return app.session_interface.get_signing_serializer(app).dumps(data)


def bad_cookies(app, make_app, phone, clock):
    """Each way a cookie can go wrong, as (reason, value)."""
    phone.send("hello", ALICE, SERVICE)
    good = cookie_of(phone, ALICE, SERVICE)
    rest = good.lstrip(".").split(".", 1)[1]
    tampered_data = payload(good) | {"n": 999}
    tampered = base64.urlsafe_b64encode(json.dumps(tampered_data).encode()).decode().rstrip("=") + "." + rest
    foreign_app = make_app(SECRET_KEY=OTHER_SECRET)
    foreign = forged(foreign_app, payload(good))
    bob_phone_cookie = forged(app, payload(good))  # valid, but bound to Alice's pair
    clock.advance(-14401)  # signed just over the idle limit ago: the signature's own timestamp says so
    expired = forged(app, payload(good))
    clock.advance(14401 + 301)  # signed by an instance whose clock runs just over 5 minutes ahead
    future = forged(app, payload(good))
    clock.advance(-301 - 14701)  # signed longer ago than Twilio keeps any cookie: a clock stepped
    ancient = forged(app, payload(good))
    clock.advance(14701)
    other_conversation = make_app(CONVERSATION="probe_conversation:forgetful")
    return {
        "from the future": ("clock_future", future),
        "older than twilio keeps": ("clock_past", ancient),
        "other conversation": (
            "other_conversation",
            forged(other_conversation, payload(good) | {"c": "0" * 12}),
        ),
        "tampered": ("bad_signature", tampered),
        "foreign key": ("bad_signature", foreign),
        "expired": ("expired", expired),
        "other pair": ("other_pair", bob_phone_cookie),
        "old format": ("old_format", forged(app, {"counter": 7})),
        "older version": ("old_format", forged(app, payload(good) | {"v": 1, "t": int(clock())})),
        "wrong types": ("old_format", forged(app, payload(good) | {"n": "7"})),
        "state not a mapping": ("old_format", forged(app, payload(good) | {"s": [1]})),
        "garbage": ("garbage", "%%%not-a-cookie%%%"),
        "not a mapping": ("old_format", forged(app, [1, 2, 3])),
    }


@pytest.mark.parametrize(
    "case", ["tampered", "foreign key", "expired", "from the future", "older than twilio keeps", "other pair", "other conversation",
             "old format", "older version", "wrong types", "state not a mapping", "garbage", "not a mapping"])  # fmt: skip
def test_a_bad_cookie_starts_a_fresh_conversation_and_says_why(
    app, make_app, twilio, clock, webhook_log, case
):
    reason, value = bad_cookies(app, make_app, twilio, clock)[case]
    sender = BOB if case == "other pair" else ALICE
    plant_cookie(twilio, sender, SERVICE, value, clock)
    reply = twilio.send("hi", sender, SERVICE)
    assert reply.status == 200
    assert reply.text == echoed(1, "hi")
    assert webhook_log()[-1]["fresh"] == reason
    assert twilio.send("again", sender, SERVICE).text == echoed(2, "again")


def test_cookie_bytes_that_are_not_utf8_never_break_the_webhook(twilio, webhook_log):
    reply = twilio.deliver(twilio.params("hi", ALICE, SERVICE), cookie="conversation=caf\xe9")
    assert reply.status == 200 and reply.text == echoed(1, "hi")
    assert webhook_log()[-1]["fresh"] == "garbage"
    good = cookie_of(twilio, ALICE, SERVICE)
    reply = twilio.deliver(
        twilio.params("again", ALICE, SERVICE), cookie=f"other=caf\xe9; conversation={good}"
    )
    assert reply.status == 200 and reply.text == echoed(2, "again")


def test_idle_expiry_restarts_the_conversation(twilio, clock):
    talk(twilio, 3)
    clock.advance(14400 - 1)
    assert "#4" in twilio.send("still here", ALICE, SERVICE).text  # the idle clock restarted with #3
    clock.advance(14400 + 1)
    assert twilio.send("back after a while", ALICE, SERVICE).text == echoed(1, "back after a while")


def test_a_cookie_from_a_clock_up_to_five_minutes_ahead_continues_the_conversation(
    twilio, clock, webhook_log
):
    talk(twilio, 2)
    clock.advance(-300)  # this instance's clock runs 5 minutes behind the one that signed the cookie
    assert twilio.send("from a slower instance", ALICE, SERVICE).text == echoed(3, "from a slower instance")
    assert "fresh" not in webhook_log()[-1]
    clock.advance(-1)  # the reply's cookie was signed by this clock: a second more is still fine
    assert "#4" in twilio.send("still here", ALICE, SERVICE).text


@pytest.mark.parametrize(("step", "reason"), [(-301, "clock_future"), (14400 + 301, "clock_past")])
def test_a_cookie_no_clock_skew_explains_is_a_clock_fault_with_a_warning_and_a_count(
    make_app, make_phone, clock, caplog, step, reason
):
    app = make_app(CONVERSATION_IDLE_SECONDS="600")
    twilio = make_phone(app)
    talk(twilio, 2)
    stale = cookie_of(twilio, ALICE, SERVICE)
    clock.advance(step)
    plant_cookie(
        twilio, ALICE, SERVICE, stale, clock
    )  # the jar would have dropped it: an instance's clock stepped
    assert twilio.send("after the step", ALICE, SERVICE).text == echoed(1, "after the step")
    (line,) = [r for r in caplog.records if getattr(r, "webhook", {}).get("fresh") == reason]
    assert line.levelname == "WARNING" and line.webhook["count"] == 1
    metrics = app.test_client().get("/metrics").get_data(as_text=True).splitlines()
    assert f'responder_conversations_fresh_total{{reason="{reason}"}} 1.0' in metrics


def test_a_cookie_older_than_the_idle_limit_but_within_twilios_four_hours_is_plainly_expired(
    make_app, make_phone, clock, webhook_log
):
    phone = make_phone(make_app(CONVERSATION_IDLE_SECONDS="600"))
    talk(phone, 2)
    stale = cookie_of(phone, ALICE, SERVICE)
    clock.advance(14400)
    plant_cookie(phone, ALICE, SERVICE, stale, clock)
    phone.send("hi", ALICE, SERVICE)
    assert webhook_log()[-1]["fresh"] == "expired"


def test_idle_expiry_is_enforced_by_the_server_too(make_app, make_phone, clock, webhook_log):
    phone = make_phone(make_app(CONVERSATION_IDLE_SECONDS="60"))
    talk(phone, 2)
    stale = cookie_of(phone, ALICE, SERVICE)
    clock.advance(61)
    plant_cookie(phone, ALICE, SERVICE, stale, clock)  # a client that ignores Max-Age
    assert phone.send("hi", ALICE, SERVICE).text == echoed(1, "hi")
    assert webhook_log()[-1]["fresh"] == "expired"


def test_key_rotation_keeps_conversations(make_app, make_phone, webhook_log):
    old = make_phone(make_app(SECRET_KEY=OTHER_SECRET))
    talk(old, 3)
    rotated_app = make_app(SECRET_KEY=SECRET, SECRET_KEY_FALLBACKS=OTHER_SECRET)
    rotated = make_phone(rotated_app)
    rotated.jars = old.jars
    assert "#4" in rotated.send("after rotation", ALICE, SERVICE).text
    assert "fresh" not in webhook_log()[-1]
    # re-signed with the new key: an app that knows only the new key accepts it
    new_only = make_phone(make_app(SECRET_KEY=SECRET))
    new_only.jars = rotated.jars
    assert "#5" in new_only.send("later", ALICE, SERVICE).text


def test_a_cookie_from_an_unknown_key_is_not_accepted_after_rotation_is_done(make_app, make_phone):
    old = make_phone(make_app(SECRET_KEY=OTHER_SECRET))
    talk(old, 3)
    new_only = make_phone(make_app(SECRET_KEY=SECRET))
    new_only.jars = old.jars
    assert new_only.send("hi", ALICE, SERVICE).text == echoed(1, "hi")


def test_the_built_in_cookie_size_stays_flat_over_ten_thousand_messages(make_app, make_phone):
    twilio = make_phone(make_app(CONVERSATION=""))
    twilio.send("first", ALICE, SERVICE)
    size_after_one = twilio.cookie_size(ALICE, SERVICE)
    reply = talk(twilio, 9_999)
    assert "10000" in reply.text
    size_after_many = twilio.cookie_size(ALICE, SERVICE)
    assert size_after_many - size_after_one <= 8  # only the counter's digits grow
    assert size_after_many < 4096 // 16


def test_cookies_are_signed_exactly_as_flasks_own_session_signs_them(app, twilio):
    from flask.sessions import SecureCookieSessionInterface

    twilio.send("hello", ALICE, SERVICE)
    ours = cookie_of(twilio, ALICE, SERVICE)
    flasks = SecureCookieSessionInterface().get_signing_serializer(app)
    assert flasks.loads(ours) == payload(ours)


@pytest.mark.parametrize(
    ("public_url", "base_url", "is_secure"),
    [("http://sms.example.com", "https://sms.example.com", True), ("http://sms.example.com", "http://sms.example.com", False),
     ("https://sms.example.com", "http://sms.example.com", True)],
)  # fmt: skip
def test_the_cookie_is_secure_when_the_public_url_or_the_request_is_https(
    make_app, public_url, base_url, is_secure
):
    app = make_app(PUBLIC_URL=public_url)
    phone = Simulator(FlaskTransport(app), base_url + "/sms", token=TOKEN, sign_for=public_url + "/sms")
    reply = phone.send("hi", ALICE, SERVICE)
    assert reply.status == 200
    assert ("; Secure" in reply.headers["set-cookie"]) is is_secure


def test_a_signed_payload_that_is_not_json_is_garbage_and_the_next_cookie_is_bound_again(
    app, twilio, clock, webhook_log
):
    serializer = app.session_interface.get_signing_serializer(app)
    not_json = serializer.make_signer().sign(base64.urlsafe_b64encode(b"not json").rstrip(b"=")).decode()
    plant_cookie(twilio, ALICE, SERVICE, not_json, clock)
    assert twilio.send("hi", ALICE, SERVICE).text == echoed(1, "hi")
    assert webhook_log()[-1]["fresh"] == "garbage"
    assert twilio.send("again", ALICE, SERVICE).text == echoed(2, "again")


def test_the_cookie_payload_has_a_24_character_pair_a_12_digit_fingerprint_and_the_conversation_key(
    app, twilio
):
    twilio.send("hello", ALICE, SERVICE)
    payload = cookie_payload(cookie_of(twilio, ALICE, SERVICE))
    assert len(payload["p"]) == 24 and len(payload["m"]) == 12
    assert payload["c"] == app.extensions["responder"].conversation.key
    assert len(fingerprint("SM" + "a" * 32)) == 12 and fingerprint("") == ""


def test_a_state_at_the_budget_fits_a_cookie_of_at_most_2048_characters(twilio):
    twilio.send("hello", ALICE, SERVICE)
    assert twilio.send("fill", ALICE, SERVICE).text == "full"
    value = cookie_of(twilio, ALICE, SERVICE)
    assert len(json.dumps(cookie_payload(value)["s"], separators=(",", ":"))) == 1024
    largest = cookie_payload(value) | {"n": 9_999_999}  # the count with seven digits
    uncompressed = len(base64.urlsafe_b64encode(json.dumps(largest, separators=(",", ":")).encode()))
    signature = len(value) - len(value.lstrip(".").split(".")[0]) - value.startswith(".")
    print(
        f"cookie value at the state budget: {len(value)} characters, {uncompressed + signature} uncompressed "
        "with a seven-digit count"
    )
    assert len(value) <= uncompressed + signature <= 2048
    assert twilio.send("after", ALICE, SERVICE).text == echoed(3, "after", turns=1)  # "fill" kept no turns


def test_conversations_on_other_pairs_are_not_affected_by_a_bad_cookie(twilio, clock):
    twilio.send("hello", BOB, SERVICE)
    plant_cookie(twilio, ALICE, SERVICE, "garbage", clock)
    twilio.send("hi", ALICE, SERVICE)
    assert twilio.send("again", BOB, SERVICE).text == echoed(2, "again")


def test_rotation_verifies_with_each_fallback_key_derived_for_itself(make_app, make_phone):
    old = make_phone(make_app(SECRET_KEY=OTHER_SECRET))
    old.send("one", ALICE, SERVICE)
    rotated = make_phone(make_app(SECRET_KEY=SECRET, SECRET_KEY_FALLBACKS=OTHER_SECRET))
    rotated.jars = old.jars
    assert rotated.send("two", ALICE, SERVICE).text == echoed(2, "two")


def test_a_conversation_at_count_zero_is_a_valid_cookie_not_a_fresh_start(app, twilio, clock, webhook_log):
    twilio.send("hello", ALICE, SERVICE)
    payload = cookie_payload(cookie_of(twilio, ALICE, SERVICE)) | {"n": 0}
    plant_cookie(
        twilio, ALICE, SERVICE, app.session_interface.get_signing_serializer(app).dumps(payload), clock
    )
    assert twilio.send("hi", ALICE, SERVICE).text == echoed(1, "hi", turns=2)
    assert "fresh" not in webhook_log()[-1]
    assert twilio.send("again", ALICE, SERVICE).text == echoed(2, "again", turns=3)


def test_a_conversation_cookie_after_a_comma_joined_cookie_header_continues(twilio):
    twilio.send("hello", ALICE, SERVICE)
    joined = f"theme=dark,{twilio.cookie_header(ALICE, SERVICE)}"  # how gunicorn joins two Cookie headers
    reply = twilio.deliver(twilio.params("again", ALICE, SERVICE), cookie=joined)
    assert reply.text == echoed(2, "again")


def test_a_cookie_is_good_for_exactly_its_idle_lifetime(make_app, make_phone, clock, webhook_log):
    phone = make_phone(make_app(CONVERSATION_IDLE_SECONDS="60"))
    phone.send("one", ALICE, SERVICE)
    for advance, reply in ((60, echoed(2, "two")), (61, echoed(1, "two"))):
        stale = cookie_of(phone, ALICE, SERVICE)
        clock.advance(advance)
        plant_cookie(
            phone, ALICE, SERVICE, stale, clock
        )  # Twilio's jar drops it at Max-Age; the server checks too
        assert phone.send("two", ALICE, SERVICE).text == reply
    assert webhook_log()[-1]["fresh"] == "expired"


# Written by the previous format (v2, count 2) for ALICE -> SERVICE with the test key: it had no
# conversation key and no state, so an upgrade starts such conversations afresh, saying why.
WRITTEN_BY_FORMAT_2 = (
    "eyJ2IjoyLCJwIjoieVlMTFJnSmpadExmQklJbXRhZUwiLCJuIjoyLCJtIjoiYzIyZGUxMzYyOTk2In0.a0nSAA."
    "x39XdIvN-5fGxwvTbcYfJEb-M5U"
)


def test_a_cookie_of_the_previous_format_starts_fresh_as_old_format(twilio, clock, webhook_log):
    plant_cookie(twilio, ALICE, SERVICE, WRITTEN_BY_FORMAT_2, clock)
    assert twilio.send("again", ALICE, SERVICE).text == echoed(1, "again")
    assert webhook_log()[-1]["fresh"] == "old_format"
    assert twilio.send("and again", ALICE, SERVICE).text == echoed(2, "and again")
