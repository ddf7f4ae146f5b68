"""Log lines: one per record, whatever a field holds."""

import json
import logging
import shlex

import pytest
from helpers import ALICE, SERVICE, TOKEN

import logs
from logs import JsonFormatter, TextFormatter


def record(message="webhook", **fields):
    entry = logging.LogRecord("responder", logging.INFO, __file__, 1, message, (), None)
    entry.webhook = fields
    return entry


@pytest.mark.parametrize(
    "sid",
    [
        "SM1\nINFO webhook sid=SM2 outcome=reply",
        "SM1\r\nforged",
        "x outcome=reply",
        "a\u2028b",
        'q"uote',
        "\x1b[31m",
    ],
)
@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_no_field_can_forge_a_line_or_a_field(formatter, sid):
    line = formatter.format(record(sid=sid, outcome="refused:signature"))
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and "\x1b" not in line
    if isinstance(formatter, JsonFormatter):
        assert json.loads(line)["sid"] == sid
    else:
        words = shlex.split(line)
        assert words[:2] == ["INFO", "webhook"]
        assert [w.split("=", 1)[0] for w in words[2:]] == ["sid", "outcome"]
        assert words[-1] == "outcome=refused:signature"


def test_plain_values_read_as_they_are():
    line = TextFormatter().format(record(sid="SM" + "a" * 32, pair="Abc-_12", count=3, ms=0.42))
    assert line == f"INFO webhook sid=SM{'a' * 32} pair=Abc-_12 count=3 ms=0.42"


def test_the_message_itself_is_escaped():
    line = TextFormatter().format(record("caller directory: bad\nERROR forged"))
    assert "\n" not in line and line.startswith("INFO caller directory: bad\\nERROR forged")


def test_the_webhook_refusal_is_logged_for_a_405_before_routing(app, webhook_log):
    app.test_client().put("/sms")
    assert webhook_log()[-1] == {
        "outcome": "refused:405",
        "why": "The method is not allowed for the requested URL.",
    }


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
    monkeypatch.setattr(logs.log, "handlers", [])
    monkeypatch.setattr(logs.log, "propagate", False)
    for name in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    logs.configure_logging(production)
    (handler,) = logs.log.handlers
    assert isinstance(handler, logs.StderrHandler)  # never blocks: tests/test_log_faults.py
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
    monkeypatch.setattr("responder.take_turn", lambda *a: 1 / 0)
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


@pytest.mark.parametrize(
    ("env", "formatter"), [("production", JsonFormatter), ("development", TextFormatter)]
)
def test_the_first_app_of_a_process_logs_in_its_modes_format(make_app, monkeypatch, env, formatter):
    monkeypatch.setattr(logs.log, "handlers", [])
    monkeypatch.setattr(logs.log, "propagate", False)
    for name in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    make_app(RESPONDER_ENV=env)
    (handler,) = logs.log.handlers
    assert type(handler.formatter) is formatter
