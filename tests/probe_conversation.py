"""A small conversation for the service's own tests: its replies show what the service handed it.

`echo` answers "#count name: body (turns=N)", keeping `turns` in its state; a few bodies play a faulty
conversation. `echo.repeat` says a reply again from the state it left, so retries can be pinned exactly.
"""

import base64
import hashlib

from conversation import STATE_BUDGET_BYTES, Reply

SECRET_DETAIL = "do-not-log-this-7f3a"


def said(message, turns: int) -> str:
    media = f" +{message.num_media}" if message.num_media else ""
    return f"#{message.count} {message.name}: {message.body}{media} (turns={turns})"


def echo(state, message):
    """Echo the message with the service's count and the caller's name; misbehave on request."""
    if message.body == "raise":
        raise RuntimeError(SECRET_DETAIL)
    if message.body == "bloat":
        return Reply("too big", {"notes": SECRET_DETAIL * 100})
    if message.body == "grow":
        return Reply("growing", {**state, f"k{len(state)}": "y" * 100})
    if message.body == "deep":  # nested past what the JSON encoder can write
        deep: dict = {}
        for _ in range(100_000):
            deep = {"a": deep}
        return Reply("deep", deep)
    if message.body == "set":
        return Reply("not json", {"seen": {1, 2}})
    if message.body == "bye":
        return Reply("bye", None)
    if message.body == "quiet":
        return Reply("", state)
    if message.body == "idle?":
        return Reply(f"idle={message.idle_seconds}", state)
    if message.body == "fill":  # the largest state allowed, of text that does not compress
        return Reply("full", {"n": filler(STATE_BUDGET_BYTES - len('{"n":""}'))})
    if message.body == "tuple":
        return ("a plain tuple", {"turns": 0})
    turns = state.get("turns", 0) + 1
    return Reply(said(message, turns), {"turns": turns})


def repeat(state, message):
    """Return the reply the state's message got: it kept the `turns` that reply said."""
    return said(message, state.get("turns", 0))


echo.repeat = repeat


def forgetful(state, message):
    """The same echo, declared as version 2 and without a repeat: a retry after its answer gets nothing."""
    return echo(state, message)


forgetful.version = 2


def filler(length: int) -> str:
    """Return `length` characters of URL-safe text that zlib cannot shrink (a hash chain), the same every time."""
    blocks, digest = [], b"filler"
    while sum(map(len, blocks)) < length:
        digest = hashlib.sha256(digest).digest()
        blocks.append(base64.urlsafe_b64encode(digest).decode().rstrip("="))
    return "".join(blocks)[:length]
