"""One inbound message's turn: the service's keywords and retries first, then the conversation's step.

No Flask, no cookie: the saved Progress comes in and goes out as plain values.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

from conversation import Conversation, Message, fit, state_problem

RESET_REPLY = "Your conversation has been reset. Your next message starts a new one."
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
RESET_KEYWORDS = frozenset({"RESET"})


class ConversationBug(Exception):
    """A step that raised or answered what the service cannot keep; `problem` is safe to log."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class Progress:
    """What the cookie keeps of one pair's conversation."""

    count: int = 0
    last_sid_fingerprint: str = ""  # fingerprint of the last counted MessageSid
    state: dict = field(default_factory=dict)  # what the conversation's last reply kept
    last_at: int = 0  # when the last counted message arrived (Unix seconds): HELP and retries leave it


@dataclass(frozen=True)
class Inbound:
    """One inbound webhook, as far as a turn cares."""

    body: str = ""
    sid_fingerprint: str = ""
    num_media: int = 0
    opt_out_type: str = ""
    name: str = ""
    sender: str = ""
    recipient: str = ""


@dataclass(frozen=True)
class Turn:
    """The outcome of one message: the reply ('' for none), what to keep (None: delete it), and why."""

    reply: str
    progress: Progress | None  # None: the conversation ends, its cookie is deleted
    outcome: str
    count: int = 0  # the message's number in the conversation (0: a keyword outside it)
    message: Message | None = None  # what the conversation was handed (None: it was not called)


def fingerprint(message_sid: str) -> str:
    """Return a short fingerprint of a MessageSid, enough to spot Twilio's retries ('' for none)."""
    if not message_sid:
        return ""
    return hashlib.blake2b(message_sid.encode(), digest_size=6).hexdigest()


def keyword_of(body: str, opt_out_type: str = "") -> str:
    """Return the keyword group a message triggers ('' when it is an ordinary message)."""
    opt_out_type = opt_out_type.strip().upper()
    if opt_out_type in ("STOP", "START", "HELP"):
        return opt_out_type
    word = body.strip()
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


def run_step(conversation: Conversation, state: dict, message: Message) -> tuple[str, dict | None]:
    """Call the conversation's step; raise ConversationBug for a raise or an answer it cannot give."""
    try:  # on a copy: a step that mutates its state in place keeps nothing it did not return
        answer = conversation.step(copy.deepcopy(state), message)
    except Exception as exc:
        raise ConversationBug(f"the step raised {type(exc).__name__}") from None
    if not (isinstance(answer, tuple) and len(answer) == 2):
        raise ConversationBug(f"the step answered a {type(answer).__name__}, not Reply(text, state)")
    text, new_state = answer
    if not isinstance(text, str):
        raise ConversationBug(f"the reply's text is a {type(text).__name__}, not a str")
    if new_state is not None and (problem := state_problem(new_state)):
        raise ConversationBug(problem)
    return text, new_state


def take_turn(
    progress: Progress, inbound: Inbound, now: float, conversation: Conversation, help_text: str
) -> Turn:
    """Apply one message arriving at `now`: keywords and retries as the service owns them, else the step."""
    keyword = keyword_of(inbound.body, inbound.opt_out_type)
    if keyword in ("STOP", "START"):
        return Turn("", None, f"keyword:{keyword.lower()}")
    if keyword == "HELP":
        return Turn(fit(help_text), progress, "keyword:help", progress.count)
    if keyword == "RESET":
        return Turn(RESET_REPLY, None, "keyword:reset")

    is_retry = bool(inbound.sid_fingerprint) and inbound.sid_fingerprint == progress.last_sid_fingerprint
    count = progress.count if is_retry else progress.count + 1
    # Since the last counted message (None when new); never negative when another instance's clock is ahead.
    idle_seconds = max(0.0, float(now - progress.last_at)) if progress.count else None
    message = Message(
        body=inbound.body,
        name=inbound.name,
        sender=inbound.sender,
        recipient=inbound.recipient,
        num_media=inbound.num_media,
        count=count,
        idle_seconds=idle_seconds,
    )
    if is_retry:  # Twilio got the first answer: never advance; repeat it where the conversation can
        try:
            repeated = (
                conversation.repeat(copy.deepcopy(progress.state), message) if conversation.repeat else ""
            )
        except Exception as exc:
            raise ConversationBug(f"the repeat raised {type(exc).__name__}") from None
        return Turn(fit(repeated if isinstance(repeated, str) else ""), progress, "duplicate", count, message)
    text, state = run_step(conversation, progress.state, message)
    kept = None if state is None else Progress(count, inbound.sid_fingerprint, state, int(now))
    return Turn(fit(text), kept, "reply", count, message)
