"""Edges a mutation run found unpinned: each is behaviour a user or operator would notice."""

import base64
import json
import time

import pytest
from conftest import ALICE, BOB, SERVICE, TOKEN, cookie_of, plant_cookie, rewrite

from conversation import Conversation, Inbound, Texts, fingerprint, step
from devtools.simulator import cookie_payload, sign
from responder import media_count
from signatures import DIAGNOSIS_INTERVAL


def forged_request(app, headers=None, signed_for="https://elsewhere.example/sms"):
    data = {"From": ALICE, "To": SERVICE, "Body": "hi"}
    headers = {"X-Twilio-Signature": sign(TOKEN, signed_for, data), **(headers or {})}
    return app.test_client().post("/sms", base_url="https://sms.example.com", data=data, headers=headers)


def test_the_diagnosis_runs_at_most_once_a_second_and_says_so(app, webhook_log, monkeypatch):
    now = [time.monotonic()]
    monkeypatch.setattr("signatures.time.monotonic", lambda: now[0])
    forged_request(app)
    assert webhook_log()[-1]["why"] == (
        "signature does not match https://sms.example.com/sms under any known variant (wrong auth token?)"
    )
    now[0] += DIAGNOSIS_INTERVAL - 0.01
    forged_request(app)
    assert (
        webhook_log()[-1]["why"]
        == "signature does not match (not diagnosed: at most one diagnosis per second)"
    )
    now[0] += 0.01
    forged_request(app)
    assert "under any known variant" in webhook_log()[-1]["why"]


def test_a_missing_signature_is_named_as_such(app, webhook_log):
    app.test_client().post("/sms", data={"From": ALICE, "To": SERVICE})
    assert webhook_log()[-1]["why"] == "no X-Twilio-Signature header: the request did not come from Twilio"


@pytest.mark.parametrize(
    ("headers", "signed_for"),
    [
        ({"X-Forwarded-Host": "sms.example.net"}, "https://sms.example.net/sms"),  # host alone
        ({"X-Forwarded-Proto": "http"}, "http://sms.example.com/sms"),  # scheme alone
        ({"X-Forwarded-Host": "a.example, b.example"}, "https://a.example/sms"),  # the first of a list
    ],
)
def test_each_forwarded_header_alone_is_diagnosed(make_app, webhook_log, headers, signed_for):
    app = make_app(RESPONDER_ENV="development", PUBLIC_URL="")
    forged_request(app, headers, signed_for)
    why = webhook_log()[-1]["why"]
    assert why.startswith(f"signature matches {signed_for} but https://sms.example.com/sms was checked")


def test_a_get_diagnosis_hides_the_query(make_app, webhook_log):
    app = make_app(RESPONDER_ENV="development", PUBLIC_URL="")
    query = "From=%2B15005550101&To=%2B15005550199&Body=secret"
    signature = sign(TOKEN, "http://sms.example.com/sms?" + query, {})
    app.test_client().get(
        f"/sms?{query}", base_url="https://sms.example.com", headers={"X-Twilio-Signature": signature}
    )
    assert webhook_log()[-1]["why"] == (
        "signature matches http://sms.example.com/sms?… but https://sms.example.com/sms?… was checked: set "
        "PUBLIC_URL to the exact base URL in the Twilio Console, or TRUSTED_PROXIES to the number of proxies "
        "that set X-Forwarded-Proto; request refused"
    )


def test_behind_a_trusted_proxy_the_client_address_is_the_forwarded_one(make_app):
    from flask import request

    app = make_app(TRUSTED_PROXIES="1")
    seen = []
    app.before_request(lambda: seen.append(request.remote_addr))
    app.test_client().get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    assert seen == ["203.0.113.9"]


@pytest.mark.parametrize(
    ("public_url", "base_url", "is_secure"),
    [("http://sms.example.com", "https://sms.example.com", True), ("http://sms.example.com", "http://sms.example.com", False),
     ("https://sms.example.com", "http://sms.example.com", True)],
)  # fmt: skip
def test_the_cookie_is_secure_when_the_public_url_or_the_request_is_https(
    make_app, public_url, base_url, is_secure
):
    app = make_app(PUBLIC_URL=public_url)
    data = {"From": ALICE, "To": SERVICE, "Body": "hi"}
    url = base_url.replace("https://", "http://") if public_url.startswith("http://") else public_url
    headers = {"X-Twilio-Signature": sign(TOKEN, url + "/sms", data)}
    answer = app.test_client().post("/sms", base_url=base_url, data=data, headers=headers)
    assert answer.status_code == 200
    assert ("; Secure" in answer.headers["Set-Cookie"]) is is_secure


def test_a_signed_payload_that_is_not_json_is_garbage_and_the_next_cookie_is_bound_again(
    app, twilio, clock, webhook_log
):
    serializer = app.session_interface.get_signing_serializer(app)
    not_json = serializer.make_signer().sign(base64.urlsafe_b64encode(b"not json").rstrip(b"=")).decode()
    plant_cookie(twilio, ALICE, SERVICE, not_json, clock)
    assert twilio.send("hi", ALICE, SERVICE).text.startswith("Hi Friend, welcome!")
    assert webhook_log()[-1]["fresh"] == "garbage"
    assert twilio.send("again", ALICE, SERVICE).text.endswith("message #2 in our conversation.")


def test_the_cookie_payload_is_compact_json_with_a_20_character_pair_and_a_12_digit_fingerprint(twilio):
    twilio.send("hello", ALICE, SERVICE)
    value = cookie_of(twilio, ALICE, SERVICE)
    raw = base64.urlsafe_b64decode(value.split(".")[0] + "==")
    assert b" " not in raw and json.loads(raw) == cookie_payload(value)
    payload = cookie_payload(value)
    assert len(payload["p"]) == 20 and len(payload["m"]) == 12
    assert len(fingerprint("SM" + "a" * 32)) == 12 and fingerprint("") == ""


def test_a_conversation_at_count_zero_is_a_valid_cookie(app, twilio, clock):
    twilio.send("hello", ALICE, SERVICE)
    payload = cookie_payload(cookie_of(twilio, ALICE, SERVICE)) | {"n": 0}
    plant_cookie(
        twilio, ALICE, SERVICE, app.session_interface.get_signing_serializer(app).dumps(payload), clock
    )
    assert twilio.send("hi", ALICE, SERVICE).text == "Hi Friend, welcome! Text RESET any time to start over."
    assert twilio.send("again", ALICE, SERVICE).text.endswith("message #2 in our conversation.")


def test_derived_signing_keys_are_computed_once(app, twilio, monkeypatch):
    from itsdangerous import TimestampSigner

    calls = []
    original = TimestampSigner.derive_key
    monkeypatch.setattr(
        TimestampSigner, "derive_key", lambda self, key=None: calls.append(1) or original(self, key)
    )
    for body in ("a", "b", "c"):
        twilio.send(body, ALICE, SERVICE)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("raw", "count"), [("0", 0), ("1", 1), ("100", 100), ("101", 100), ("-3", 0), ("x", 0)]
)
def test_media_counts_are_read_within_bounds(raw, count):
    assert media_count(raw) == count


def test_a_reply_cut_at_a_space_drops_the_space_before_the_ellipsis():
    result = step(Conversation(count=1), Inbound(body="hi"), Texts(count_reply="a" * 1598 + " " + "b" * 10))
    assert result.reply == "a" * 1598 + "…"


def test_the_webhook_refusal_is_logged_for_a_405_before_routing(app, webhook_log):
    app.test_client().put("/sms")
    assert webhook_log()[-1] == {
        "outcome": "refused:405",
        "why": "The method is not allowed for the requested URL.",
    }


def test_a_name_of_exactly_100_characters_is_accepted_101_refused():
    from callers import DirectoryError, parse_directory

    assert parse_directory(["number,name", "+15005550101," + "N" * 100], "c.csv", "US").names
    with pytest.raises(DirectoryError, match="longer than 100 characters"):
        parse_directory(["number,name", "+15005550101," + "N" * 101], "c.csv", "US")
    with pytest.raises(DirectoryError, match="control characters"):
        parse_directory(["number,name", "+15005550101,A\ud800"], "c.csv", "US")


def test_a_number_with_the_wrong_digit_count_reads_exactly():
    from callers import to_e164

    with pytest.raises(ValueError) as caught:
        to_e164("+1 500 555 01", "US")
    assert str(caught.value) == "the number has the wrong number of digits for its country"


def test_conversations_on_other_pairs_are_not_affected_by_a_bad_cookie(twilio, clock):
    twilio.send("hello", BOB, SERVICE)
    plant_cookie(twilio, ALICE, SERVICE, "garbage", clock)
    twilio.send("hi", ALICE, SERVICE)
    assert twilio.send("again", BOB, SERVICE).text.endswith("message #2 in our conversation.")


def test_a_reloaded_directory_reads_national_numbers_in_the_default_region(
    make_app, make_phone, clock, tmp_path
):

    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n")
    app = make_app(CALLERS_FILE=str(directory))
    rewrite(directory, "number,name\n(500) 555-0101,Grace\n", clock)
    clock.advance(6)
    assert make_phone(app).send("hi", ALICE, SERVICE).text.startswith("Hi Grace,")
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "responder_caller_directory_reload_failures_total 0.0" in text.splitlines()


def test_the_dot_env_in_the_working_directory_is_read_by_default(tmp_path):
    from config import read_environment

    (tmp_path / ".env").write_text("GREETING_TEMPLATE=From the file\n")  # the tests run in tmp_path
    assert read_environment({})["GREETING_TEMPLATE"] == "From the file"


def test_development_with_a_token_warns_nothing(tmp_path):
    from config import load_settings

    settings = load_settings({"RESPONDER_ENV": "development", "TWILIO_AUTH_TOKEN": TOKEN}, tmp_path / "k")
    assert settings.warnings == () and settings.checks_signatures


def test_a_help_text_of_exactly_1600_characters_is_accepted(tmp_path):
    from test_config import GOOD

    from config import load_settings

    assert len(load_settings({**GOOD, "HELP_TEXT": "h" * 1600}, tmp_path / "k").help_text) == 1600


def test_a_secondary_token_without_any_primary_variable_is_refused(tmp_path):
    from test_config import GOOD, problems

    env = {k: v for k, v in GOOD.items() if k != "TWILIO_AUTH_TOKEN"} | {"TWILIO_AUTH_TOKEN_SECONDARY": TOKEN}
    assert "TWILIO_AUTH_TOKEN_SECONDARY is set without TWILIO_AUTH_TOKEN; set the primary too" in problems(
        env, tmp_path
    )


def test_a_percent_escape_that_is_not_utf8_is_kept_as_written(make_app, make_phone):
    from webhook_request import parse_fields

    assert parse_fields("Body=caf%E9&To=%2B1") == {"Body": ["caf%E9"], "To": ["+1"]}


def test_a_count_zero_cookie_is_not_a_fresh_start(app, twilio, clock, webhook_log):
    twilio.send("hello", ALICE, SERVICE)
    payload = cookie_payload(cookie_of(twilio, ALICE, SERVICE)) | {"n": 0}
    plant_cookie(
        twilio, ALICE, SERVICE, app.session_interface.get_signing_serializer(app).dumps(payload), clock
    )
    twilio.send("hi", ALICE, SERVICE)
    assert "fresh" not in webhook_log()[-1]


def test_rotation_verifies_with_each_fallback_key_derived_for_itself(make_app, make_phone):
    from conftest import OTHER_SECRET, SECRET

    old = make_phone(make_app(SECRET_KEY=OTHER_SECRET))
    old.send("one", ALICE, SERVICE)
    rotated = make_phone(make_app(SECRET_KEY=SECRET, SECRET_KEY_FALLBACKS=OTHER_SECRET))
    rotated.jars = old.jars
    assert rotated.send("two", ALICE, SERVICE).text.endswith("message #2 in our conversation.")
