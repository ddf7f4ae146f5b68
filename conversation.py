"""The conversation interface: a step gets the state it kept and a Message, and answers a Reply.

    def step(state: dict, message: Message) -> Reply: ...

The service owns everything else: signatures, the cookie, its pair binding and expiry, the keywords
(STOP, START, HELP, RESET), Twilio's retries and the message count. A step must be deterministic in its
state and message: a retried webhook is answered by running it again on the same state.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

MAX_BODY_CHARS = 1600  # Twilio's limit for one outbound message body
STATE_BUDGET_BYTES = 1024  # a state's compact JSON; the cookie then stays well within 2,048 characters
DEFAULT_NAME = "Friend"
BUILT_IN = "greeting:greet_and_count"
WHERE_IT_GOES = "put the module in the project's conversations/ folder, an installed package or PYTHONPATH"


class Reply(NamedTuple):
    """A step's answer: the text ('' answers nothing) and the state to keep (None ends the conversation)."""

    text: str
    state: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Message:
    """One inbound message as a conversation sees it (read-only)."""

    body: str
    name: str  # the caller directory's name for the sender, else "Friend"
    sender: str
    recipient: str
    num_media: int
    count: int  # this message's number in the conversation, 1 for the first (the service keeps it)
    idle_seconds: float | None  # since the conversation's previous message; None when it is new


class ConversationError(ValueError):
    """A CONVERSATION setting that names nothing the service can run."""


@dataclass(frozen=True)
class Conversation:
    """A loaded conversation: its step, what it is called, the key its cookies carry, and its repeat."""

    step: Callable[[dict, Message], Reply | tuple]
    name: str  # module:callable, as CONVERSATION names it
    key: str  # short hash of its name and declared version: another conversation's cookie never fits
    repeat: Callable[[dict, Message], str] | None = None  # the reply already sent for the state's message


def conversation_key(name: str, version: object) -> str:
    """Return the short key that tells one conversation's (and version's) cookies from another's."""
    return hashlib.blake2b(f"{name}@{version}".encode(), digest_size=6).hexdigest()


def load(target: str) -> Conversation:
    """Import `module:callable` once and wrap it; raise ConversationError saying why it cannot run."""
    module_name, colon, attribute = target.strip().partition(":")
    if not (module_name and colon and attribute):
        raise ConversationError(f"{target!r} is not module:callable (e.g. conversations.survey:step)")
    # importlib rather than werkzeug's import_string: a missing module must read apart from a missing
    # dependency of the module, and import_string tries the module twice under two names.
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):  # the module or a package of its path
            raise ConversationError(f"no module named {exc.name!r}; {WHERE_IT_GOES}") from None
        raise ConversationError(
            f"importing {module_name!r} raised ModuleNotFoundError: no module named {exc.name!r}"
        ) from None
    except Exception as exc:  # the module itself raised while being imported
        raise ConversationError(f"importing {module_name!r} raised {type(exc).__name__}") from None
    step = getattr(module, attribute, None)
    if step is None:
        raise ConversationError(f"module {module_name!r} has no attribute {attribute!r}")
    if not callable(step):
        raise ConversationError(f"{target!r} is a {type(step).__name__}, not a callable step(state, message)")
    name = f"{module_name}:{attribute}"  # as configured: two lambdas or wrappers never share a key
    return Conversation(
        step=step,
        name=name,
        key=conversation_key(name, getattr(step, "version", 1)),
        repeat=getattr(step, "repeat", None),
    )


def state_problem(state: object) -> str:
    """Return what keeps a state out of the cookie ('' when it fits): not JSON, or over the budget."""
    if not isinstance(state, dict):
        return f"state is a {type(state).__name__}, not a dict (or None to end the conversation)"
    try:
        text = json.dumps(state, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return "state holds a value JSON cannot carry (use str, int, float, bool, None, list and dict)"
    except Exception as exc:  # nested too deep for the encoder, a dict subclass that raises, ...
        return f"state cannot be written as JSON ({type(exc).__name__})"
    if json.loads(text) != state:  # int keys, tuples: JSON would hand back something else
        return "state does not survive JSON unchanged (dict keys must be str; lists, not tuples)"
    if len(text) > STATE_BUDGET_BYTES:
        return f"state is {len(text):,} bytes of JSON, over the budget of {STATE_BUDGET_BYTES:,}"
    return ""


def fit(text: str) -> str:
    """Trim a reply to Twilio's body limit."""
    text = text.strip()
    if len(text) <= MAX_BODY_CHARS:
        return text
    return text[: MAX_BODY_CHARS - 1].rstrip() + "…"
