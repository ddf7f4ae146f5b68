"""Flask's signed session cookie as the conversation store: versioned, bound to its number pair and conversation.

The cookie holds {"v": format, "p": keyed hash of (From, To), "c": the conversation's key, "n": count,
"m": last MessageSid fingerprint, "t": when the last counted message came, "s": the conversation's
state}, in compact JSON signed by Flask's own signing serializer
(itsdangerous) with its timestamp. The session opens only for a webhook whose signature passed, so a
forged request never costs a cookie verification.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from flask import Flask, Request, Response, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadData, BadPayload

from signatures import SignatureGuard
from turn import Progress

COOKIE_NAME = "conversation"
FORMAT_VERSION = 3  # 2 had no conversation key and no state; 1 kept its own timestamp
# Another instance's clock may run ahead (or an NTP step put this one back): a cookie stamped up to this
# far in the future continues its conversation.
MAX_CLOCK_SKEW_SECONDS = 300
# Twilio keeps a cookie 4 hours at most: one older than that (or from further ahead than any skew) cannot
# have come from Twilio, so this instance's clock (or the one that signed it) has stepped.
TWILIO_COOKIE_CAP_SECONDS = 4 * 3600


def pair_hash(key: str, sender: str, recipient: str) -> str:
    """Return the keyed hash that binds a cookie to its (From, To) pair."""
    message = f"responder.pair\n{sender}\n{recipient}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:24]


def is_conversation(data: object) -> bool:
    """Tell whether a verified payload has this format's shape."""
    return (
        isinstance(data, dict)
        and data.get("v") == FORMAT_VERSION
        and isinstance(data.get("p"), str)
        and isinstance(data.get("c"), str)
        and isinstance(data.get("n"), int)
        and data["n"] >= 0
        and isinstance(data.get("m"), str)
        and isinstance(data.get("t"), int)
        and isinstance(data.get("s"), dict)
    )


class ConversationSession(SecureCookieSession):
    """One pair's saved conversation (`n`, `m`, `t`, `s`), with the pair it is bound to and why it opened empty.

    `pair` is '' for a request that is no readable, signed webhook: such a session is never written.
    `fresh_reason` is '' when it continues a conversation.
    """

    pair: str = ""
    fresh_reason: str = ""

    @property
    def permanent(self) -> bool:  # always: every cookie carries Max-Age, nothing to store for it
        return True

    @permanent.setter
    def permanent(self, value: bool) -> None:
        pass


def read_progress(session: ConversationSession) -> Progress:
    """Read the saved conversation from the session (empty: a fresh one): the one read at the cookie boundary."""
    if not session:
        return Progress()
    return Progress(
        count=session["n"], last_sid_fingerprint=session["m"], state=session["s"], last_at=session["t"]
    )


def write_progress(session: ConversationSession, progress: Progress | None) -> None:
    """Write the conversation into the session; None ends it (the cookie is deleted)."""
    if progress is None:
        session.clear()
    else:
        session.update(
            n=progress.count, m=progress.last_sid_fingerprint, t=progress.last_at, s=progress.state
        )


class CompactJSON:
    """Plain compact JSON, itsdangerous' own default: a state holds JSON values only (checked before it is
    kept), so Flask's tagged JSON, which also carries tuples, bytes and dates, has nothing to tag. It
    measured 20 us of a 420 us webhook in bench/stages.py (cookie open and write), so it stays."""

    @staticmethod
    def loads(payload: str | bytes) -> object:
        return json.loads(payload)

    @staticmethod
    def dumps(value: object) -> str:
        return json.dumps(value, separators=(",", ":"))


class ConversationSessionInterface(SecureCookieSessionInterface):
    """Open a signed webhook's conversation from its cookie and write it back with `Max-Age`."""

    session_class = ConversationSession
    serializer = CompactJSON()

    def __init__(self, guard: SignatureGuard, conversation_key: str) -> None:
        self.guard = guard
        self.conversation_key = conversation_key

    def open_session(self, app: Flask, request: Request) -> ConversationSession:
        numbers = getattr(request, "number_pair", None)
        if numbers is None or self.guard.refusal(request):  # the view refuses it: no cookie work
            return self.session_class()
        data, pair, fresh_reason = self.verify(app, request, *numbers)
        session = self.session_class(data)
        session.pair, session.fresh_reason = pair, fresh_reason
        return session

    def verify(self, app: Flask, request: Request, sender: str, recipient: str) -> tuple:
        """Verify the request's cookie: (what it saved, the pair's hash, why it is empty)."""
        keys = [app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ())]
        pair = pair_hash(keys[0], sender, recipient)
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return {}, pair, "new"
        try:
            data, signed_at = self.get_signing_serializer(app).loads(value, return_timestamp=True)
        except BadPayload:  # signed by us, yet not a payload the serializer can read
            return {}, pair, "garbage"
        except BadData:
            return {}, pair, "bad_signature" if "." in value else "garbage"
        age = time.time() - signed_at.timestamp()
        if age < -MAX_CLOCK_SKEW_SECONDS:
            return {}, pair, "clock_future"
        if age > TWILIO_COOKIE_CAP_SECONDS + MAX_CLOCK_SKEW_SECONDS:
            return {}, pair, "clock_past"
        if age > app.permanent_session_lifetime.total_seconds():
            return {}, pair, "expired"
        if not is_conversation(data):  # signed by us, but not in the format this version writes
            return {}, pair, "old_format"
        if data["p"] != pair and data["p"] not in [pair_hash(k, sender, recipient) for k in keys[1:]]:
            return {}, pair, "other_pair"
        if data["c"] != self.conversation_key:  # another conversation (or version) wrote it
            return {}, pair, "other_conversation"
        return {"n": data["n"], "m": data["m"], "t": data["t"], "s": data["s"]}, pair, ""

    def save_session(self, app: Flask, session: ConversationSession, response: Response) -> None:
        if session.accessed:
            response.vary.add("Cookie")
        # Twilio keeps cookies from successful answers only; a refused or failed one changes nothing.
        if response.status_code >= 400 or not session.modified or not session.pair:
            return
        name = self.get_cookie_name(app)
        attributes = {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app) or request.is_secure,
            "samesite": self.get_cookie_samesite(app),
            "httponly": self.get_cookie_httponly(app),
            "partitioned": self.get_cookie_partitioned(app),
        }
        if not session:
            response.delete_cookie(name, **attributes)
            return
        payload = {"v": FORMAT_VERSION, "p": session.pair, "c": self.conversation_key, **session}
        value = self.get_signing_serializer(app).dumps(payload)
        max_age = int(app.permanent_session_lifetime.total_seconds())
        response.set_cookie(name, value, max_age=max_age, **attributes)
