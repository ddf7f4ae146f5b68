"""Log lines: one per record, whatever a field holds."""

import json
import logging
import shlex

import pytest

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
