"""The built-in conversation: a greeting for message 1, the count after it. Its state is empty.

It reads the operator's templates (GREETING_TEMPLATE, COUNT_REPLY_TEMPLATE) from the app's config; the
count is the service's, so the cookie holds no name and no text.
"""

from __future__ import annotations

import string

from flask import current_app

from conversation import DEFAULT_NAME, MAX_BODY_CHARS, Message, Reply

PLACEHOLDERS = frozenset({"name", "count", "to"})
DEFAULT_GREETING = "Hi {name}, welcome! Text RESET any time to start over."
DEFAULT_COUNT_REPLY = "Hi {name}, this is message #{count} in our conversation."


def template_errors(template: str, longest_name: int = 100) -> list[str]:
    """Return what is wrong with a reply template (unknown placeholders, bad braces, unbounded output)."""
    try:
        parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return [f"bad braces ({exc}); write {{{{ and }}}} for literal braces"]
    unknown = sorted({f for f, _, _ in parsed if f not in PLACEHOLDERS})
    if unknown:
        allowed = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
        return [f"unknown placeholder(s) {', '.join(unknown)!s}; allowed: {allowed}"]
    if any(spec or conv for _, spec, conv in parsed):  # a width or precision could make any length
        return ["placeholders take no format spec or conversion; use plain {name}, {count} and {to}"]
    longest = template.format(name="W" * longest_name, count=10**12, to="+" + "9" * 15)
    if len(longest) > MAX_BODY_CHARS:
        return [f"can render {len(longest)} characters with a long name; Twilio's limit is {MAX_BODY_CHARS}"]
    if not template.format(name=DEFAULT_NAME, count=1, to="+15005550100").strip():
        return ["is empty; a reply must say something"]
    return []


def media_note(num_media: int) -> str:
    """Return the acknowledgement of attachments ('' for none)."""
    if num_media <= 0:
        return ""
    return f" We got your {num_media} attachment{'s' if num_media != 1 else ''}."


def greet_and_count(state: dict, message: Message) -> Reply:
    """Greet message 1 by name; answer every later one with its number."""
    config = current_app.config
    template = config["GREETING_TEMPLATE"] if message.count == 1 else config["COUNT_REPLY_TEMPLATE"]
    text = template.format(name=message.name, count=message.count, to=message.recipient)
    return Reply(text + media_note(message.num_media), {})


def repeat(state: dict, message: Message) -> str:
    """Return the reply already sent for this message: the state is empty, so the step says it again."""
    return greet_and_count(state, message).text


greet_and_count.repeat = repeat
