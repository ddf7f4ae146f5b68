"""The conversation rules: state + inbound message -> reply + new state. No Flask, no Twilio."""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass

MAX_BODY_CHARS = 1600  # Twilio's limit for one outbound message body
PLACEHOLDERS = frozenset({"name", "count", "to"})

DEFAULT_GREETING = "Hi {name}, welcome! Text RESET any time to start over."
DEFAULT_COUNT_REPLY = "Hi {name}, this is message #{count} in our conversation."
RESET_REPLY = "Your conversation has been reset. Your next message starts a new one."
DEFAULT_NAME = "Friend"

OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
RESET_KEYWORDS = frozenset({"RESET"})


@dataclass(frozen=True)
class Texts:
    """The user-facing texts an operator can replace."""

    greeting: str = DEFAULT_GREETING
    count_reply: str = DEFAULT_COUNT_REPLY
    help: str = ""
    reset: str = RESET_REPLY


@dataclass(frozen=True)
class Conversation:
    """What the cookie remembers about one number pair."""

    count: int = 0
    last_sid_fingerprint: str = ""  # fingerprint of the last counted MessageSid


@dataclass(frozen=True)
class Inbound:
    """One inbound message, as far as the rules care."""

    body: str = ""
    sid_fingerprint: str = ""  # fingerprint of the MessageSid
    num_media: int = 0
    opt_out_type: str = ""
    name: str = DEFAULT_NAME
    to: str = ""


@dataclass(frozen=True)
class Step:
    """The outcome of one message: reply text (may be empty), the new state, and why."""

    reply: str
    conversation: Conversation | None  # None: delete the conversation
    outcome: str


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


def fingerprint(message_sid: str) -> str:
    """Return a short fingerprint of a MessageSid, enough to spot Twilio's retries ('' for none)."""
    if not message_sid:
        return ""
    return hashlib.blake2b(message_sid.encode(), digest_size=6).hexdigest()


def keyword_of(message: Inbound) -> str:
    """Return the keyword group a message triggers ('' when it is an ordinary message)."""
    opt_out_type = message.opt_out_type.strip().upper()
    if opt_out_type in ("STOP", "START", "HELP"):
        return opt_out_type
    word = message.body.strip()
    if not word.isascii():  # "\u017ftop".upper() is "STOP", but it is not one of Twilio's keywords
        return ""
    word = word.upper()
    if word in OPT_OUT_KEYWORDS:
        return "STOP"
    if word in OPT_IN_KEYWORDS:
        return "START"
    if word in HELP_KEYWORDS:
        return "HELP"
    if word in RESET_KEYWORDS:
        return "RESET"
    return ""


def fit(text: str) -> str:
    """Trim a reply to Twilio's body limit."""
    text = text.strip()
    if len(text) <= MAX_BODY_CHARS:
        return text
    return text[: MAX_BODY_CHARS - 1].rstrip() + "…"


def media_note(num_media: int) -> str:
    """Return the acknowledgement of attachments ('' for none)."""
    if num_media <= 0:
        return ""
    return f" We got your {num_media} attachment{'s' if num_media != 1 else ''}."


def render(template: str, count: int, message: Inbound) -> str:
    """Fill a reply template for one message."""
    text = template.format(name=message.name, count=count, to=message.to)
    return fit(text + media_note(message.num_media))


def step(conversation: Conversation, message: Inbound, texts: Texts) -> Step:
    """Apply one inbound message to a conversation."""
    keyword = keyword_of(message)
    if keyword in ("STOP", "START"):
        return Step("", None, f"keyword:{keyword.lower()}")
    if keyword == "HELP":
        return Step(fit(texts.help), conversation, "keyword:help")
    if keyword == "RESET":
        return Step(fit(texts.reset), None, "keyword:reset")

    is_retry = bool(message.sid_fingerprint) and message.sid_fingerprint == conversation.last_sid_fingerprint
    if is_retry:
        count, outcome = conversation.count, "duplicate"
    else:
        count, outcome = conversation.count + 1, "reply"
    template = texts.greeting if count == 1 else texts.count_reply
    new_state = Conversation(count=count, last_sid_fingerprint=message.sid_fingerprint)
    return Step(render(template, count, message), new_state, outcome)
