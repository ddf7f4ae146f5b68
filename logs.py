"""The service's log lines: JSON in production, key=value text in development; no value can forge a line."""

from __future__ import annotations

import json
import logging
import re
import sys

log = logging.getLogger("responder")
PLAIN = re.compile(r"[\w.:/@+*-]*")  # a text value made only of these is written as it is; others are quoted


class JsonFormatter(logging.Formatter):
    """Format records as one JSON object per line, with the webhook's fields when present."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(record.created, 3), "level": record.levelname.lower(), "msg": record.getMessage()}
        line.update(getattr(record, "webhook", {}))
        return json.dumps(line, separators=(",", ":"))


def text_value(value: object) -> str:
    """Write a value for a text line: plain words as they are, anything else quoted and escaped."""
    text = str(value)
    return text if PLAIN.fullmatch(text) and text.isascii() else json.dumps(text)


class TextFormatter(logging.Formatter):
    """Format records as readable `key=value` lines for development."""

    def format(self, record: logging.LogRecord) -> str:
        message = json.dumps(record.getMessage())[1:-1]  # control characters escaped, quotes kept readable
        fields = " ".join(f"{k}={text_value(v)}" for k, v in getattr(record, "webhook", {}).items())
        return f"{record.levelname} {message} {fields}".rstrip()


def configure_logging(production: bool) -> None:
    """Send the service's logs to stderr: JSON lines in production, readable text in development."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if production else TextFormatter())
    if production:
        # The logging HOWTO's "Optimization": skip what no line prints (thread names, multiprocessing).
        # The process id stays: gunicorn's error log prints it, and a record without it cannot be formatted.
        logging.logThreads = logging.logMultiprocessing = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = True
