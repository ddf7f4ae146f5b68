"""The service's log lines: JSON in production, key=value text in development."""

from __future__ import annotations

import json
import logging
import sys

log = logging.getLogger("responder")


class JsonFormatter(logging.Formatter):
    """Format records as one JSON object per line, with the webhook's fields when present."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(record.created, 3), "level": record.levelname.lower(), "msg": record.getMessage()}
        line.update(getattr(record, "webhook", {}))
        return json.dumps(line, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Format records as readable `key=value` lines for development."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "webhook", {}).items())
        return f"{record.levelname} {record.getMessage()} {fields}".rstrip()


def configure_logging(production: bool) -> None:
    """Send the service's logs to stderr: JSON lines in production, readable text in development."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    if production:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = True
