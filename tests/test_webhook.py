"""Conversations through the webhook, delivered by the simulated Twilio."""

import json

import pytest
from helpers import ALICE, BOB, CAROL, OTHER_SERVICE, SECRET, SERVICE, TOKEN, cookie_of, echoed, rewrite

from responder import media_count
from turn import RESET_REPLY


def test_each_message_reaches_the_conversation_with_its_count_and_state(twilio):
    replies = [twilio.send(body, ALICE, SERVICE) for body in ["hello", "how are you", "later"]]
    assert [r.status for r in replies] == [200, 200, 200]
    assert [r.text for r in replies] == [echoed(1, "hello"), echoed(2, "how are you"), echoed(3, "later")]


def test_twiml_is_served_as_xml_with_nothing_before_the_declaration(twilio):
    reply = twilio.send("hello", ALICE, SERVICE)
    assert reply.headers["content-type"] == "text/xml; charset=utf-8"
    assert reply.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><Response>')
    assert reply.root.tag == "Response"


def test_conversations_are_kept_apart_per_number_pair(twilio):
    pairs = [(ALICE, SERVICE), (BOB, SERVICE), (ALICE, OTHER_SERVICE), (CAROL, SERVICE)]
    sent = dict.fromkeys(pairs, 0)
    order = [0, 1, 0, 2, 3, 0, 1, 1, 2, 0, 3, 3, 3]
    for i in order:
        sender, to = pairs[i]
        reply = twilio.send(f"message {i}", sender, to)
        sent[pairs[i]] += 1
        assert reply.text == echoed(sent[pairs[i]], f"message {i}")


def test_get_webhooks_work_like_posts(app, make_phone):
    phone = make_phone(app, url="https://sms.example.com/sms?campaign=spring", method="GET")
    assert phone.send("hi", ALICE, SERVICE).text == echoed(1, "hi")
    assert phone.send("again", ALICE, SERVICE).text == echoed(2, "again")
    # Twilio signs the query percent-encoded, as sent; a decoded URL would refuse every emoji.
    assert phone.send("ok 👍 ça va?", ALICE, SERVICE).text == echoed(3, "ok 👍 ça va?")


def test_an_unexpected_failure_is_a_logged_plain_500_without_secrets(app, twilio, webhook_log, monkeypatch):
    def broken(*args):
        raise RuntimeError(f"boom {SECRET}")

    monkeypatch.setattr("responder.take_turn", broken)
    reply = twilio.send("hello", ALICE, SERVICE)
    assert reply.status == 500
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert SECRET not in reply.body.decode() and "boom" not in reply.body.decode()
    assert webhook_log()[-1] == {"outcome": "error:500", "error": "RuntimeError"}


@pytest.mark.parametrize("word", ["STOP", "stopall", "UNSUBSCRIBE", "Cancel", "END", "quit", "REVOKE", "optout",
                                  "START", "yes", "UNSTOP"])  # fmt: skip
def test_opt_out_and_opt_in_keywords_end_the_conversation_silently(twilio, word):
    twilio.send("hello", ALICE, SERVICE)
    twilio.send("more", ALICE, SERVICE)
    reply = twilio.send(f"  {word} ", ALICE, SERVICE)
    assert reply.status == 200
    assert reply.root.tag == "Response" and len(reply.root) == 0
    assert any("Max-Age=0" in c for c in reply.set_cookies)
    assert twilio.cookie_header(ALICE, SERVICE) == ""
    assert twilio.send("back again", ALICE, SERVICE).text == echoed(1, "back again")


@pytest.mark.parametrize("word", ["HELP", "info", " Help "])
def test_help_is_silent_by_default_and_not_counted(twilio, word):
    twilio.send("hello", ALICE, SERVICE)
    reply = twilio.send(word, ALICE, SERVICE)
    assert reply.status == 200 and reply.messages == []
    assert twilio.send("next", ALICE, SERVICE).text == echoed(2, "next")


def test_help_text_is_sent_when_configured(make_app, make_phone):
    phone = make_phone(make_app(HELP_TEXT="Example Co: reply STOP to opt out. Msg&data rates may apply."))
    phone.send("hello", ALICE, SERVICE)
    assert (
        phone.send("HELP", ALICE, SERVICE).text
        == "Example Co: reply STOP to opt out. Msg&data rates may apply."
    )
    assert phone.send("next", ALICE, SERVICE).text == echoed(2, "next")


def test_reset_confirms_and_starts_over(twilio):
    for body in ["a", "b", "c"]:
        twilio.send(body, ALICE, SERVICE)
    assert twilio.send("reset", ALICE, SERVICE).text == RESET_REPLY
    assert twilio.send("hello", ALICE, SERVICE).text == echoed(1, "hello")


def test_keywords_only_match_the_whole_body(twilio):
    twilio.send("hello", ALICE, SERVICE)
    assert twilio.send("stop texting me", ALICE, SERVICE).text == echoed(2, "stop texting me")


def test_twilios_opt_out_type_wins_over_the_body(twilio):
    twilio.send("hello", ALICE, SERVICE)
    params = twilio.params("please no more", ALICE, SERVICE)
    params["OptOutType"] = "STOP"
    reply = twilio.deliver(params)
    assert reply.messages == []
    assert twilio.send("hi", ALICE, SERVICE).text == echoed(1, "hi")


def test_a_retried_webhook_gets_the_same_reply_and_is_not_counted_twice(twilio):
    twilio.send("one", ALICE, SERVICE)
    second = twilio.send("two", ALICE, SERVICE)
    again = twilio.retry(second, "two", ALICE, SERVICE)
    assert again.text == second.text == echoed(2, "two")
    assert twilio.send("three", ALICE, SERVICE).text == echoed(3, "three")


def test_media_is_counted_and_handed_to_the_conversation_but_never_fetched(twilio):
    twilio.send("hello", ALICE, SERVICE)
    reply = twilio.send("", ALICE, SERVICE, media=["http://127.0.0.1:9/never-fetched.jpg"] * 2)
    assert reply.text == "#2 Friend:  +2 (turns=2)"
    assert twilio.send("next", ALICE, SERVICE).text == echoed(3, "next")


def test_names_come_from_the_caller_directory(make_app, make_phone, tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n(500) 555-0101,Ada Lovelace\n+1 500 555 0102,Grace\n")
    phone = make_phone(make_app(CALLERS_FILE=str(directory)))
    assert phone.send("hi", ALICE, SERVICE).text == echoed(1, "hi", name="Ada Lovelace")
    assert phone.send("hi", BOB, SERVICE).text == echoed(1, "hi", name="Grace")
    assert phone.send("hi", CAROL, SERVICE).text == echoed(1, "hi", name="Friend")


def test_two_messages_in_flight_at_once_the_later_reply_wins(twilio):
    twilio.send("hello", ALICE, SERVICE)
    replies = twilio.send_together(["a", "b"], ALICE, SERVICE)
    assert [r.text for r in replies] == [echoed(2, "a"), echoed(2, "b")]
    assert twilio.send("next", ALICE, SERVICE).text == echoed(3, "next")  # the documented limit


def test_health_and_readiness(app):
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
    text = ready.get_data(as_text=True)
    assert SECRET not in text and TOKEN not in text


def test_readiness_stays_ready_naming_the_directory_when_a_reload_goes_wrong(make_app, clock, tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n")
    client = make_app(CALLERS_FILE=str(directory)).test_client()
    assert "warnings" not in client.get("/readyz").get_json()
    rewrite(directory, "number,name\nnot-a-number,Ada\n", clock)
    clock.advance(10)
    answer = client.get("/readyz")
    assert answer.status_code == 200 and answer.get_json()["callers"] == 1  # the previous directory serves
    assert ":2:" in answer.get_json()["warnings"]["caller_directory"]


def test_the_cookie_is_reissued_with_max_age_on_every_reply(twilio):
    for body in ["a", "b"]:
        reply = twilio.send(body, ALICE, SERVICE)
        (cookie,) = reply.set_cookies
        assert "Max-Age=14400" in cookie and "HttpOnly" in cookie


def test_each_reply_logs_one_json_line_without_bodies_or_numbers(twilio, webhook_log, caplog):
    from logs import JsonFormatter

    twilio.send("my secret diary", ALICE, SERVICE)
    twilio.send("more", ALICE, SERVICE)
    lines = webhook_log()
    assert [line["count"] for line in lines] == [1, 2]
    assert {line["outcome"] for line in lines} == {"reply"}
    formatted = [json.loads(JsonFormatter().format(r)) for r in caplog.records if hasattr(r, "webhook")]
    assert all(set(line) >= {"sid", "pair", "count", "outcome", "ms"} for line in formatted)
    text = caplog.text + json.dumps(formatted)
    for leaked in ["my secret diary", ALICE, SERVICE, ALICE[-7:], cookie_of(twilio, ALICE, SERVICE)]:
        assert leaked not in text


def test_messages_without_a_message_sid_are_each_counted(twilio):
    for n in (1, 2, 3):
        params = twilio.params(f"message {n}", ALICE, SERVICE)
        for name in ("MessageSid", "SmsSid", "SmsMessageSid"):
            del params[name]
        params["MessageSid"] = ""  # the simulator keeps a reply's sid; Twilio would send none
        reply = twilio.deliver(params)
        assert reply.text == echoed(n, f"message {n}")


def test_a_successful_reload_of_the_caller_directory_changes_the_names(make_app, make_phone, clock, tmp_path):

    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n")
    app = make_app(CALLERS_FILE=str(directory))
    phone = make_phone(app)
    assert phone.send("hi", ALICE, SERVICE).text == echoed(1, "hi", name="Ada")
    rewrite(directory, "number,name\n+15005550101,Grace\n+15005550102,Bob\n", clock)
    clock.advance(4)  # checked every 5 seconds: not yet
    assert phone.send("again", ALICE, SERVICE).text == echoed(2, "again", name="Ada")
    clock.advance(2)
    assert phone.send("and again", ALICE, SERVICE).text == echoed(3, "and again", name="Grace")
    assert phone.send("hi", BOB, SERVICE).text == echoed(1, "hi", name="Bob")
    assert app.test_client().get("/readyz").get_json()["callers"] == 2


@pytest.mark.parametrize(
    ("raw", "count"), [("0", 0), ("1", 1), ("100", 100), ("101", 100), ("-3", 0), ("x", 0)]
)
def test_media_counts_are_read_within_bounds(raw, count):
    assert media_count(raw) == count
