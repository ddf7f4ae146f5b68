"""Any conversation on the service: what it is handed, what it may keep, and its bugs kept to one 500."""

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import ALICE, REPO, SERVICE, cookie_of, echoed, phone_at, plant_cookie, production_settings
from probe_conversation import SECRET_DETAIL

from config import ConfigError
from devtools.simulator import DEFAULT_FROM, DEFAULT_TO


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("raise", "the step raised RuntimeError"),
        ("bloat", "state is 2,012 bytes of JSON, over the budget of 1,024"),
        ("set", "state holds a value JSON cannot carry (use str, int, float, bool, None, list and dict)"),
        ("deep", "state cannot be written as JSON (RecursionError)"),
    ],
)
def test_a_conversations_bug_is_one_plain_500_one_log_line_and_no_cookie(
    twilio, caplog, webhook_log, body, problem
):
    twilio.send("one")
    kept = twilio.cookie_header()
    reply = twilio.send(body)
    assert reply.status == 500 and reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.set_cookies == [] and twilio.cookie_header() == kept  # the conversation stays where it was
    assert webhook_log()[-1] == {"outcome": "error:500", "error": problem}
    assert [
        r.levelname for r in caplog.records if getattr(r, "webhook", {}).get("outcome") == "error:500"
    ] == ["WARNING"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # never Flask's "Exception on /sms"
    everything = caplog.text + reply.body.decode()
    assert (
        SECRET_DETAIL not in everything
        and "Traceback" not in everything
        and "turns" not in reply.body.decode()
    )
    assert twilio.send("two").text == echoed(2, "two")


def test_a_state_of_none_ends_the_conversation_after_its_reply(twilio, webhook_log):
    twilio.send("one")
    reply = twilio.send("bye")
    assert reply.text == "bye" and any("Max-Age=0" in c for c in reply.set_cookies)
    assert webhook_log()[-1]["outcome"] == "reply" and webhook_log()[-1]["count"] == 2
    assert twilio.send("hello").text == echoed(1, "hello")


def test_an_empty_text_answers_an_empty_response_and_keeps_the_state(twilio):
    twilio.send("one")
    reply = twilio.send("quiet")
    assert reply.status == 200 and reply.root.tag == "Response" and len(reply.root) == 0
    assert twilio.state() == {"turns": 1}


def test_the_conversation_gets_the_idle_time_since_the_previous_message(twilio, clock):
    assert twilio.send("idle?").text == "idle=None"
    clock.advance(90)
    assert twilio.send("idle?").text == "idle=90.0"


def test_help_and_retries_are_not_messages_of_the_conversation_for_its_idle_time(twilio, clock):
    twilio.send("HELP")  # before any message: the conversation is still new
    assert twilio.send("idle?").text == "idle=None"
    first = twilio.send("one")
    clock.advance(50)
    twilio.send("HELP")
    twilio.retry(first, "one")
    clock.advance(50)
    assert twilio.send("idle?").text == "idle=100.0"


def test_a_retry_with_the_cookie_from_before_the_answer_gets_the_same_reply_and_counts_once(twilio):
    twilio.send("one")
    before = twilio.cookie_header()
    first = twilio.send("two")
    params = twilio.params("two", DEFAULT_FROM, DEFAULT_TO, sid=first.sid)
    again = twilio.deliver(params, cookie=before)  # Twilio never got the first answer: it kept the old cookie
    assert again.text == first.text == echoed(2, "two")
    assert twilio.state() == {"turns": 2}
    assert twilio.send("three").text == echoed(3, "three")


def test_a_retry_after_the_answer_never_advances_and_is_silent_unless_the_conversation_repeats(
    make_app, make_phone, webhook_log
):
    for target, repeated in (("probe_conversation:echo", True), ("probe_conversation:forgetful", False)):
        phone = make_phone(make_app(CONVERSATION=target))
        phone.send("one", ALICE, SERVICE)
        second = phone.send("two", ALICE, SERVICE)
        again = phone.retry(second, "two", ALICE, SERVICE)
        assert again.text == (second.text if repeated else "")
        assert webhook_log()[-1]["outcome"] == "duplicate" and webhook_log()[-1]["count"] == 2
        assert phone.send("three", ALICE, SERVICE).text == echoed(3, "three")


def test_another_conversations_cookie_is_never_handed_to_this_one(make_app, make_phone, clock, webhook_log):
    before = make_phone(make_app(CONVERSATION="probe_conversation:echo"))
    before.send("one", ALICE, SERVICE)
    app = make_app(CONVERSATION="probe_conversation:forgetful")
    after = make_phone(app)
    plant_cookie(after, ALICE, SERVICE, cookie_of(before, ALICE, SERVICE), clock)
    assert after.send("two", ALICE, SERVICE).text == echoed(1, "two")
    assert webhook_log()[-1]["fresh"] == "other_conversation"
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'responder_conversations_fresh_total{reason="other_conversation"} 1.0' in metrics


def test_keywords_never_reach_the_conversation(make_app, make_phone, monkeypatch):
    calls = []
    monkeypatch.setattr("probe_conversation.said", lambda message, turns: calls.append(message.body) or "x")
    phone = make_phone(make_app())
    for body in ("STOP", "START", "HELP", "RESET", "info", "hello"):
        phone.send(body, ALICE, SERVICE)
    assert calls == ["hello"]


@pytest.mark.parametrize(
    ("target", "cause"),
    [
        ("nowhere_at_all:step", "no module named 'nowhere_at_all'"),
        ("probe_conversation:nothing", "module 'probe_conversation' has no attribute 'nothing'"),
        ("probe_conversation:SECRET_DETAIL", "is a str, not a callable"),
        ("just-a-name", "is not module:callable"),
    ],
)
def test_a_conversation_that_cannot_run_refuses_start_up_naming_the_setting(make_app, target, cause):
    with pytest.raises(ConfigError) as refused:
        make_app(CONVERSATION=target)
    (problem,) = refused.value.problems
    assert problem.startswith(f"CONVERSATION={target!r}: ") and cause in problem


def test_create_app_takes_flask_config_as_the_tutorial_does(make_app, make_phone):
    app = make_app(TESTING=True, SESSION_COOKIE_PATH="/VALUE/")
    assert app.testing and app.config["SESSION_COOKIE_PATH"] == "/VALUE/"
    (cookie,) = make_phone(app).send("hello", ALICE, SERVICE).set_cookies
    assert "; Path=/VALUE/" in cookie and cookie.startswith("conversation=")


def check(tmp_path, conversation: str, module: str = "") -> subprocess.CompletedProcess:
    """Run `serve.py check` (what make check runs) with production settings and a conversation module."""
    if module:
        (tmp_path / "mine.py").write_text(textwrap.dedent(module))
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path),
        **production_settings(),
        "CONVERSATION": conversation,
    }
    return subprocess.run(
        [sys.executable, str(REPO / "serve.py"), "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.server
def test_make_check_drives_a_good_conversation_through_hundreds_of_messages(tmp_path):
    result = check(tmp_path, "conversations.survey:step")
    assert result.returncode == 0, result.stderr
    assert (
        "conversation conversations.survey:step: 300 simulated messages from 5 phones and one conversation of 200: "
        in result.stdout
    )


@pytest.mark.server
@pytest.mark.parametrize(
    ("module", "defect"),
    [
        (
            """
            from conversation import Reply
            def step(state, message):
                return Reply("noted", {"seen": state.get("seen", "") + "0123456789"})
            """,
            "(#102 in +15005550106's conversation, body",  # where it crossed the budget
        ),
        (
            """
            import random
            from conversation import Reply
            def step(state, message):
                return Reply(f"your number is {random.random()}", {})
            """,
            "another reply or state for the same state and message: a step must be deterministic",
        ),
        (
            """
            def step(state, message):
                return "x" * 2000, {}
            """,
            "a reply of 2,000 characters, over Twilio's 1,600: it would be trimmed",
        ),
        (
            """
            def step(state, message):
                return str(1 // (message.count - 3)), {}
            """,
            "the step raised ZeroDivisionError",
        ),
    ],
    ids=["grows", "not repeatable", "too long", "raises"],
)
def test_make_check_refuses_a_conversation_naming_its_first_defect_and_message(tmp_path, module, defect):
    result = check(tmp_path, "mine:step", module)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("CONVERSATION=mine:step: message ") and defect in line, line


@pytest.mark.server
def test_make_check_refuses_a_module_whose_import_raises_in_one_line(tmp_path):
    result = check(tmp_path, "mine:step", f"raise RuntimeError({SECRET_DETAIL!r})\n")
    assert result.returncode == 2 and "Traceback" not in result.stderr and SECRET_DETAIL not in result.stderr
    assert "  - CONVERSATION='mine:step': importing 'mine' raised RuntimeError" in result.stderr.splitlines()


@pytest.mark.server
def test_a_users_conversation_and_its_scripts_pass_against_make_serve(start_server, tmp_path):
    server = start_server(
        ["make", "--no-print-directory", "-C", str(REPO), "serve"], CONVERSATION="conversations.survey:step"
    )
    url = f"http://127.0.0.1:{server.port}/sms"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "conversations/tests/test_survey.py",
         "conversations/tests/survey.chat", "--twilio-url", url, "--twilio-token", production_settings()["TWILIO_AUTH_TOKEN"]],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert "5 passed, 2 skipped" in result.stdout, result.stdout
    assert "needs the service in-process" in result.stdout
    log = json.dumps(server.log_path.read_text())
    assert "Ada" not in log and "94103" not in log  # what the texter typed stays out of the logs


@pytest.mark.server
def test_against_make_serve_a_conversations_bug_is_one_500_and_its_conversation_goes_on(start_server):
    server = start_server(["make", "--no-print-directory", "-C", str(REPO), "serve"])
    phone = phone_at(server.port)
    assert phone.send("one", ALICE, SERVICE).text == echoed(1, "one")
    failed = phone.send("raise", ALICE, SERVICE)
    assert failed.status == 500 and failed.set_cookies == [] and SECRET_DETAIL not in failed.body.decode()
    second = phone.send("two", ALICE, SERVICE)
    assert second.text == echoed(2, "two")
    assert phone.retry(second, "two", ALICE, SERVICE).text == second.text  # the probe repeats itself
    assert phone.send("bye", ALICE, SERVICE).text == "bye" and phone.cookie_header(ALICE, SERVICE) == ""
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if '"webhook' in line]
    assert [line["outcome"] for line in lines] == ["reply", "error:500", "reply", "duplicate", "reply"]
    assert (
        lines[1]["error"] == "the step raised RuntimeError"
        and SECRET_DETAIL not in server.log_path.read_text()
    )
