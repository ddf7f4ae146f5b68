"""A two-question survey: a name, then a ZIP code (two re-asks, then a give-up), then a summary.

    CONVERSATION=conversations.survey:step make run

An idle gap of over 10 minutes asks the pending question again instead of taking the message as its
answer (a lazy timeout: it is noticed when the next message arrives). The state keeps what the texter
typed (their name): the cookie is signed, not encrypted, and the service never logs it.
"""

from __future__ import annotations

import re

from conversation import Message, Reply

REPROMPT_AFTER_SECONDS = 10 * 60
MAX_REASKS = 2
MAX_NAME_CHARS = 40
ZIP_CODE = re.compile(r"\d{5}(-\d{4})?")

ASK_NAME = "Welcome to our two-question survey! What is your name?"
ASK_NAME_AGAIN = "Please text just your name (up to 40 characters)."
ASK_ZIP = "Thanks, {name}! What is your ZIP code?"
ASK_ZIP_AGAIN = "That doesn't look like a ZIP code. Please text 5 digits, like 94103."
GIVE_UP = "Sorry, we couldn't read a ZIP code, so we'll stop here. Text anything to start again."
SUMMARY = "All done, {name}: ZIP {zip_code}. Thank you! Text anything to start a new survey."
STILL_THERE = "Still there? "


def question(state: dict) -> str:
    """Return the question the survey is waiting for."""
    return ASK_NAME if state["ask"] == "name" else ASK_ZIP.format(name=state["name"])


def step(state: dict, message: Message) -> Reply:
    """Ask for a name, then a ZIP code; summarise, then end."""
    if not state:
        return Reply(ASK_NAME, {"ask": "name"})
    if message.idle_seconds is not None and message.idle_seconds > REPROMPT_AFTER_SECONDS:
        return Reply(STILL_THERE + question(state), state)
    answer = " ".join(message.body.split())
    if state["ask"] == "name":
        if not answer or len(answer) > MAX_NAME_CHARS:
            return Reply(ASK_NAME_AGAIN, state)
        return Reply(ASK_ZIP.format(name=answer), {"ask": "zip", "name": answer, "reasks": 0})
    if ZIP_CODE.fullmatch(answer):
        return Reply(SUMMARY.format(name=state["name"], zip_code=answer), None)
    if state["reasks"] >= MAX_REASKS:
        return Reply(GIVE_UP, None)
    return Reply(ASK_ZIP_AGAIN, {**state, "reasks": state["reasks"] + 1})
