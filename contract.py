"""A conversation's contract, checked by `make check`: a few hundred simulated messages, the first defect named.

Several phones text the conversation through the service's own turn (keywords, retries, the count),
with media, empty, long and non-ASCII bodies and idle gaps up to the expiry, each state passing through
JSON as the cookie carries it. A defect: a step that raises; a state that is not JSON or over the budget
(one that grows says at which message it crossed it); another reply or state for the same state and
message; a reply that would be trimmed; a repeat that says something else than the reply it repeats.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, replace

from flask import Flask

from conversation import MAX_BODY_CHARS
from turn import ConversationBug, Inbound, Progress, keyword_of, run_step, take_turn

PHONES = ("+15005550101", "+15005550102", "+15005550103", "+447700900123", "+15005550105")
MARATHON_PHONE = "+15005550106"
SERVICE = "+15005550199"
BODIES = (
    "hi", "hello", "yes please", "no", "1", "2", "3", "9", "0", "BACK", "MENU", "menu", "Ada", "Grace Hopper",
    "94103", "12345-6789", "1234", "abcde", "", "   ", "?", "héllo 👋", "مرحبا", "你好", "\u017ftop", "x" * 1600,
    "STOP", "START", "HELP", "RESET", "stop texting me", "help me", "reset please",
)  # fmt: skip
GAPS = (0, 1, 5, 30, 90, 600, 601, 1800, 3600, 7200, 14399)


@dataclass(frozen=True)
class Defect:
    """The first thing the conversation got wrong, and the message that exposed it."""

    number: int  # the message's number in the run
    phone: str
    count: int  # its number in that phone's conversation
    body: str
    problem: str

    def __str__(self) -> str:
        body = self.body if len(self.body) <= 40 else self.body[:37] + "..."
        return (
            f"message {self.number} of the run (#{self.count} in {self.phone}'s conversation, "
            f"body {body!r}): {self.problem}"
        )


def through_the_cookie(state: dict) -> dict:
    """Return a state as the next message gets it back: through JSON."""
    return json.loads(json.dumps(state))


# Ordinary messages in one conversation: a state growing by a few bytes each crosses the budget.
MARATHON = 200
START = 1_800_000_000  # where the simulated clock starts (Unix seconds)


def check_conversation(settings, seed: int = 0, messages: int = 300) -> Defect | None:
    """Drive the settings' conversation through `messages` mixed messages, then one long conversation."""
    app = Flask(__name__)
    app.config.update(settings.flask_config())  # the built-in reads its templates from here
    with app.app_context():
        return drive(settings, random.Random(seed), messages)


def plan(rng: random.Random, messages: int) -> list[tuple[str, str, int]]:
    """Return (phone, body, idle gap) to send: mixed phones and bodies, then a marathon on a new phone."""
    ordinary = [b for b in BODIES if not keyword_of(b)]
    mixed = [(rng.choice(PHONES), rng.choice(BODIES), rng.choice(GAPS)) for _ in range(messages)]
    marathon = [(MARATHON_PHONE, rng.choice(ordinary), rng.choice(GAPS[:5])) for _ in range(MARATHON)]
    return mixed + marathon


def drive(settings, rng: random.Random, messages: int) -> Defect | None:
    """Text the conversation as planned, on a simulated clock; return the first defect (None: none found)."""
    conversation = settings.conversation
    progress = dict.fromkeys((*PHONES, MARATHON_PHONE), Progress())
    last_sent: dict[str, Inbound] = {}
    now = float(START)
    for number, (phone, body, gap) in enumerate(plan(rng, messages), 1):
        now += gap
        if progress[phone].count and now - progress[phone].last_at > settings.idle_seconds:
            progress[phone] = Progress()  # the cookie expired: a new conversation
        retried = last_sent.get(phone) if rng.random() < 0.1 else None  # Twilio retrying the last one
        inbound = retried or Inbound(
            body=body,
            sid_fingerprint=f"{number:012x}",
            num_media=rng.choice((0, 0, 0, 1, 3)),
            name="Friend",
            sender=phone,
            recipient=SERVICE,
        )
        before = progress[phone]
        try:
            turn = take_turn(before, inbound, now, conversation, settings.help_text)
            problem = repeatability(conversation, before.state, turn) if turn.outcome == "reply" else ""
        except ConversationBug as bug:
            problem = bug.problem
        if problem:
            count = (
                before.count
                if retried and before.last_sid_fingerprint == inbound.sid_fingerprint
                else before.count + 1
            )
            return Defect(number, phone, count, inbound.body, problem)
        last_sent[phone] = inbound
        kept = turn.progress
        progress[phone] = Progress() if kept is None else replace(kept, state=through_the_cookie(kept.state))
    return None


def repeatability(conversation, state: dict, turn) -> str:
    """Return how a step's answer breaks the contract when run again on the same state and message ('' if not)."""
    text, new_state = run_step(conversation, state, turn.message)
    if len(text.strip()) > MAX_BODY_CHARS:
        return f"a reply of {len(text.strip()):,} characters, over Twilio's {MAX_BODY_CHARS:,}: it would be trimmed"
    kept = None if turn.progress is None else turn.progress.state
    if text.strip() != turn.reply or new_state != kept:
        return "another reply or state for the same state and message: a step must be deterministic (Twilio retries)"
    if conversation.repeat and kept is not None:
        try:
            repeated = conversation.repeat(copy.deepcopy(kept), turn.message)
        except Exception as exc:
            return f"its repeat raised {type(exc).__name__}"
        if repeated != text:
            return "its repeat says something else than the reply it repeats"
    return ""
