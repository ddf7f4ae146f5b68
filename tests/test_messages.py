"""The exact words a user or operator reads: settings errors, warnings, refusals and log lines."""

import logging
from pathlib import Path

import pytest
from conftest import ALICE, SERVICE, TOKEN, rewrite
from test_config import GOOD, problems

import logs
from config import load_settings

SETTINGS_ERRORS = [
    ({"SECRET_KEY": ""}, "SECRET_KEY is not set; production needs a random key of at least 32 characters shared by every instance"),
    ({"TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN is not set; production checks every webhook's X-Twilio-Signature (find the token in the Twilio Console under Account > API keys & tokens)"),
    ({"PUBLIC_URL": ""}, "PUBLIC_URL is not set; production checks signatures against the URL Twilio calls only: set it to the webhook URL in the Twilio Console without /sms (e.g. https://sms.example.com; several, comma-separated)"),
    ({"TWILIO_AUTH_TOKEN": "changeme"}, "TWILIO_AUTH_TOKEN is not a Twilio auth token (32 hexadecimal characters); copy it from the Twilio Console under Account > API keys & tokens"),
    ({"TWILIO_AUTH_TOKEN_SECONDARY": "nope"}, "TWILIO_AUTH_TOKEN_SECONDARY is not a Twilio auth token (32 hexadecimal characters); copy it from the Twilio Console under Account > API keys & tokens"),
    ({"TWILIO_AUTH_TOKEN": "", "TWILIO_AUTH_TOKEN_SECONDARY": "fedcba9876543210fedcba9876543210"}, "TWILIO_AUTH_TOKEN_SECONDARY is set without TWILIO_AUTH_TOKEN; set the primary too"),
    ({"RESPONDER_ENV": "staging"}, "RESPONDER_ENV='staging': use 'development' or 'production'"),
    ({"TRUSTED_PROXIES": "one"}, "TRUSTED_PROXIES='one' is not a whole number; the number of reverse proxies in front of the service"),
    ({"TRUSTED_PROXIES": "11"}, "TRUSTED_PROXIES=11 is out of range 0..10; the number of reverse proxies in front of the service"),
    ({"CONVERSATION_IDLE_SECONDS": "14401"}, "CONVERSATION_IDLE_SECONDS=14401 is out of range 1..14400; Twilio keeps a conversation's cookie for at most 4 hours (14400 s)"),
    ({"PORT": "0"}, "PORT=0 is out of range 1..65535; a TCP port"),
    ({"DEFAULT_REGION": "ZZ"}, "DEFAULT_REGION='ZZ' is not a two-letter region code such as US or GB"),
    ({"GREETING_TEMPLATE": "Hi {nmae}"}, "GREETING_TEMPLATE: unknown placeholder(s) nmae; allowed: {count}, {name}, {to}"),
    ({"GREETING_TEMPLATE": "Hi {nmae} {x}"}, "GREETING_TEMPLATE: unknown placeholder(s) nmae, x; allowed: {count}, {name}, {to}"),
    ({"COUNT_REPLY_TEMPLATE": "#{count"}, "COUNT_REPLY_TEMPLATE: bad braces (expected '}' before end of string); write {{ and }} for literal braces"),
    ({"GREETING_TEMPLATE": "{count:>9}"}, "GREETING_TEMPLATE: placeholders take no format spec or conversion; use plain {name}, {count} and {to}"),
    ({"GREETING_TEMPLATE": "   "}, "GREETING_TEMPLATE: is empty; a reply must say something"),
    ({"GREETING_TEMPLATE": "x" * 1601}, "GREETING_TEMPLATE: can render 1601 characters with a long name; Twilio's limit is 1600"),
    ({"HELP_TEXT": "x" * 1601}, "HELP_TEXT is longer than Twilio's 1600-character limit"),
    ({"PUBLIC_URL": "ftp://x"}, "PUBLIC_URL='ftp://x': give the base URL Twilio calls, e.g. https://sms.example.com"),
    ({"PUBLIC_URL": "https://sms.example.com/?a=1"}, "PUBLIC_URL='https://sms.example.com/?a=1': give the base URL Twilio calls, e.g. https://sms.example.com"),
    ({"SECRET_KEY": "c0ffee11d00d22beef33cafe44f00d55", "TWILIO_AUTH_TOKEN": "c0ffee11d00d22beef33cafe44f00d55"}, "SECRET_KEY is the Twilio auth token; the cookie key must be a secret of its own"),
    ({"SECRET_KEY": "abcdefghabcdefghabcdefghabcdefgh"}, "SECRET_KEY is a well-known or guessable value (repeats, runs or sample words); generate one with python -c 'import secrets; print(secrets.token_urlsafe(48))'"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), SETTINGS_ERRORS)
def test_each_settings_error_reads_exactly(tmp_path, change, message):
    assert problems({**GOOD, **change}, tmp_path) == [message]


def test_a_template_a_long_name_keeps_within_the_limit_is_accepted(tmp_path):
    template = "x" * (1600 - 100) + "{name}"  # 1,500 + a 100-character name = 1,600
    assert load_settings({**GOOD, "GREETING_TEMPLATE": template}, tmp_path / "k").greeting == template
    (problem,) = problems({**GOOD, "GREETING_TEMPLATE": "x" + template}, tmp_path)
    assert problem == "GREETING_TEMPLATE: can render 1601 characters with a long name; Twilio's limit is 1600"


def test_the_development_warning_reads_exactly(tmp_path):
    settings = load_settings({"RESPONDER_ENV": "development"}, tmp_path / "k")
    assert settings.warnings == (
        "TWILIO_AUTH_TOKEN is not set: webhook signatures are NOT checked. Anyone who can reach this server "
        "can post to /sms. Development only.",
    )


def test_the_config_error_lists_its_problems_one_per_line(tmp_path):
    from config import ConfigError

    assert str(ConfigError(["a", "b"])) == "a\nb"


def test_json_log_lines_are_compact_with_ts_level_msg_then_the_fields():
    record = logging.LogRecord("responder", logging.WARNING, __file__, 1, "webhook %s", ("refused",), None)
    record.created = 1800000000.12345
    record.webhook = {"outcome": "refused:signature", "sid": "SM1"}
    line = logs.JsonFormatter().format(record)
    assert (
        line
        == '{"ts":1800000000.123,"level":"warning","msg":"webhook refused","outcome":"refused:signature","sid":"SM1"}'
    )
    plain = logging.LogRecord("responder", logging.INFO, __file__, 1, "started", (), None)
    plain.created = 1.0
    assert logs.JsonFormatter().format(plain) == '{"ts":1.0,"level":"info","msg":"started"}'
    assert logs.TextFormatter().format(plain) == "INFO started"
    assert logs.text_value('say "hi"') == '"say \\"hi\\""'


@pytest.mark.parametrize("production", [True, False])
def test_logging_goes_to_stderr_as_json_in_production_and_text_in_development(monkeypatch, production):
    import sys

    monkeypatch.setattr(logs.log, "handlers", [])
    monkeypatch.setattr(logs.log, "propagate", False)
    for name in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    logs.configure_logging(production)
    (handler,) = logs.log.handlers
    assert handler.stream is sys.stderr
    assert isinstance(handler.formatter, logs.JsonFormatter if production else logs.TextFormatter)
    assert logs.log.level == logging.INFO and logs.log.propagate is True
    if production:
        assert logging.logThreads is logging.logMultiprocessing is False
        assert logging.logProcesses is True  # gunicorn's error log prints the process id
    logs.configure_logging(not production)  # once configured, a second call changes nothing
    assert logs.log.handlers == [handler]


def test_refusals_and_failures_log_their_own_message_and_the_sid(app, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="responder")
    sid = "SM" + "7" * 32
    app.test_client().post(
        "/sms", data={"From": ALICE, "To": SERVICE, "MessageSid": sid}, headers={"X-Twilio-Signature": "x"}
    )
    refused = caplog.records[-1]
    assert refused.getMessage() == "webhook refused" and refused.webhook["sid"] == sid
    monkeypatch.setattr("responder.step", lambda *a: 1 / 0)
    from devtools.simulator import FlaskTransport, Simulator

    Simulator(FlaskTransport(app), "https://sms.example.com/sms", token=TOKEN).send("hi", ALICE, SERVICE)
    failed = [r for r in caplog.records if getattr(r, "webhook", {}).get("outcome") == "error:500"][-1]
    assert failed.getMessage() == "webhook failed" and failed.webhook["error"] == "ZeroDivisionError"


def test_start_up_warnings_are_logged_once_per_app_word_for_word(make_app, caplog):
    caplog.set_level(logging.WARNING, logger="responder")
    make_app(RESPONDER_ENV="development", TWILIO_AUTH_TOKEN="", PUBLIC_URL="")
    warned = [r.getMessage() for r in caplog.records if "NOT checked" in r.getMessage()]
    assert warned == [
        "TWILIO_AUTH_TOKEN is not set: webhook signatures are NOT checked. Anyone who can reach this server "
        "can post to /sms. Development only."
    ]


def test_caller_directory_warnings_and_reload_problems_are_logged(make_app, clock, tmp_path, caplog):

    caplog.set_level(logging.WARNING, logger="responder")
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n+15005550101,Ada again\n")
    app = make_app(CALLERS_FILE=str(directory))
    assert f"caller directory: {directory}:3: duplicate of line 2 (+1500555****); keeping the first" in [
        r.getMessage() for r in caplog.records
    ]
    rewrite(directory, "number,name\nnonsense,Bob\n", clock)
    clock.advance(5)  # exactly the recheck interval
    app.test_client().get("/readyz")
    assert (
        caplog.records[-1]
        .getMessage()
        .startswith(
            f"caller directory not reloaded, keeping the previous one: {directory}:2: not a phone number"
        )
    )


def test_the_instance_path_override_keeps_the_development_key_there(make_app, tmp_path):
    app = make_app(
        RESPONDER_ENV="development",
        TWILIO_AUTH_TOKEN="",
        PUBLIC_URL="",
        SECRET_KEY="",
        instance_path=str(tmp_path / "elsewhere"),
    )
    assert Path(app.instance_path) == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere" / "dev-secret-key").read_text().strip() == app.secret_key


def test_metrics_describe_themselves(app):
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for line in [
        "# HELP responder_webhooks_total Webhooks answered, by outcome.",
        "# HELP responder_conversations_fresh_total Conversations that started fresh, by why (new: no cookie yet).",
        "# HELP responder_webhook_duration_seconds Time spent answering a webhook.",
        "# HELP responder_caller_directory_entries Numbers in the caller directory.",
        "# HELP responder_caller_directory_reload_failures_total Caller directory reloads that failed (the previous directory was kept).",
        'responder_webhook_duration_seconds_bucket{le="0.0005"} 0.0',
        'responder_webhook_duration_seconds_bucket{le="2.5"} 0.0',
    ]:
        assert line in text.splitlines(), line
    with app.test_request_context():
        from flask import url_for

        assert url_for("metrics") == "/metrics"
    assert app.test_client().post("/metrics").status_code == 405
