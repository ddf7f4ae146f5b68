"""Flask's signed session cookie as the conversation store: compact, versioned, bound to its number pair.

The cookie holds {"v": format, "p": keyed hash of (From, To), "n": count, "m": last MessageSid
fingerprint}, signed by itsdangerous with its own timestamp, which `PERMANENT_SESSION_LIFETIME` bounds;
a timestamp a few minutes ahead (another instance's clock) is tolerated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from flask import Flask, Request, Response, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import (
    BadData,
    BadSignature,
    Serializer,
    SignatureExpired,
    TimestampSigner,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_encode
from werkzeug.http import dump_cookie

from conversation import Conversation

COOKIE_NAME = "conversation"
VALUE_MARK = "VALUE"  # stands for the signed value in the Set-Cookie template: URL-safe, so never quoted
FORMAT_VERSION = 2  # 1 kept its own timestamp; the signature's timestamp does that now
# Another instance's clock may run ahead (or an NTP step put this one back): a cookie stamped up to this
# far in the future continues its conversation; further ahead, it is refused as `future`.
MAX_CLOCK_SKEW_SECONDS = 300


class SignedInTheFuture(SignatureExpired):
    """A valid signature whose timestamp is further ahead of this clock than any skew explains."""


class CachedKeySigner(TimestampSigner):
    """itsdangerous' timestamp signer, deriving each key once instead of on every sign and verify."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.derived_keys: dict = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        key = secret_key or self.secret_keys[-1]
        if key not in self.derived_keys:
            self.derived_keys[key] = super().derive_key(secret_key)
        return self.derived_keys[key]


class SkewTolerantSigner(CachedKeySigner):
    """The cached-key signer, accepting timestamps up to MAX_CLOCK_SKEW_SECONDS ahead of this clock."""

    def unsign(self, signed_value: str | bytes, max_age: int | None = None, return_timestamp: bool = False):
        value, signed_at = super().unsign(signed_value, return_timestamp=True)  # no max_age: no age checks
        if max_age is not None:
            age = self.get_timestamp() - int(signed_at.timestamp())
            if age < -MAX_CLOCK_SKEW_SECONDS:
                raise SignedInTheFuture(f"signed {-age} s ahead of this clock")
            if age > max_age:
                raise SignatureExpired(f"Signature age {age} > {max_age} seconds")
        return (value, signed_at) if return_timestamp else value


class PlainPayloadSerializer(URLSafeTimedSerializer):
    """itsdangerous' URL-safe timed serializer, minus the zlib attempt (a payload this small never shrinks),
    with its signer built once rather than for every cookie (a signer holds keys, not request state)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.signers: dict = {}

    def make_signer(self, salt: str | bytes | None = None):
        salt = self.salt if salt is None else salt  # dumps passes None, iter_unsigners self.salt: one signer
        if salt not in self.signers:
            self.signers[salt] = super().make_signer(salt)
        return self.signers[salt]

    def dump_payload(self, obj: object) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


def pair_hash(key: bytes, sender: str, recipient: str) -> str:
    """Return the keyed hash that binds a cookie to its (From, To) pair."""
    digest = hmac.new(key, f"{sender}\n{recipient}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:15]).decode()


def is_conversation(data: object) -> bool:
    """Tell whether a verified payload has this format's shape."""
    return (
        isinstance(data, dict)
        and data.get("v") == FORMAT_VERSION
        and isinstance(data.get("p"), str)
        and isinstance(data.get("n"), int)
        and data["n"] >= 0
        and isinstance(data.get("m"), str)
    )


class ConversationSession(SecureCookieSession):
    """One pair's conversation (`n`, `m`), its cookie verified on first use, not when Flask opens it.

    Flask opens the session before the view runs; the view checks the webhook's signature first, so a
    forged request never costs a cookie verification. `pair` is the keyed hash it is bound to and
    `fresh_reason` why it opened empty ('' when it continues a conversation).
    """

    def __init__(self, initial=None, verify=None):
        super().__init__(initial)
        self.verify = verify  # returns (data, pair, fresh_reason); None once done
        self._pair, self._fresh_reason = "", ""

    def verified(self) -> ConversationSession:
        """Verify the cookie now, if it was not yet."""
        if self.verify is not None:
            data, self._pair, self._fresh_reason = self.verify()
            self.verify = None
            dict.update(self, data)  # what the cookie held is not a change to write back
        return self

    @property
    def pair(self) -> str:
        return self.verified()._pair

    @property
    def fresh_reason(self) -> str:
        return self.verified()._fresh_reason

    @property
    def permanent(self) -> bool:  # always: every cookie carries Max-Age, nothing to store for it
        return True

    @permanent.setter
    def permanent(self, value: bool) -> None:
        pass


# pragma: no mutate start (this runs at import, before mutmut can switch a mutant in)
def _verifying_first(name: str):
    method = getattr(SecureCookieSession, name)

    def call(self, *args, **kwargs):
        return method(self.verified(), *args, **kwargs)

    call.__name__, call.__doc__ = name, method.__doc__
    return call


for _name in (
    "__getitem__", "__setitem__", "__delitem__", "__contains__", "__iter__", "__len__", "__repr__", "__eq__",
    "get", "setdefault", "pop", "popitem", "update", "clear", "keys", "values", "items", "copy",
):  # fmt: skip
    setattr(ConversationSession, _name, _verifying_first(_name))
# pragma: no mutate end


def read_conversation(session: ConversationSession) -> Conversation:
    """Read the conversation from the session (empty: a fresh one): the one read at the session boundary."""
    return Conversation(count=session["n"], last_sid_fingerprint=session["m"]) if session else Conversation()


def write_conversation(session: ConversationSession, conversation: Conversation | None) -> None:
    """Write the conversation into the session; None ends it (the cookie is deleted)."""
    if conversation is None:
        session.clear()
    else:
        session.update(n=conversation.count, m=conversation.last_sid_fingerprint)


class ConversationSessionInterface(SecureCookieSessionInterface):
    """Open the pair's conversation from its cookie (verified once) and write it back with `Max-Age`."""

    session_class = ConversationSession
    # Flask's default wraps hashlib.sha1 in a Python function, which sends hmac down its slow pure-Python
    # path; the OpenSSL function itself gives the same signatures.
    digest_method = staticmethod(hashlib.sha1)

    def __init__(self) -> None:
        self._serializers: dict = {}
        self._pair_keys: dict = {}
        self._cookie_template: tuple = (None, "")

    @staticmethod
    def _keys(app: Flask) -> tuple[str, ...]:
        return (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))

    def get_signing_serializer(self, app: Flask):
        """Build the (key-rotation-aware) serializer once per key set instead of per request."""
        keys = self._keys(app)
        if keys not in self._serializers:
            self._serializers[keys] = PlainPayloadSerializer(
                list(reversed(keys)),  # itsdangerous expects the current key last
                salt=self.salt,
                signer=SkewTolerantSigner,  # same signatures as Flask's, fewer HMACs, clock skew allowed
                signer_kwargs={"key_derivation": self.key_derivation, "digest_method": self.digest_method},
            )
        return self._serializers[keys]

    def pair_keys(self, app: Flask) -> list[bytes]:
        """Derive the pair-binding keys from the signing keys, current first, once per key set."""
        keys = self._keys(app)
        if keys not in self._pair_keys:
            derive = [hmac.new(k.encode(), b"responder.pair-binding", hashlib.sha256).digest() for k in keys]
            self._pair_keys[keys] = derive
        return self._pair_keys[keys]

    def open_session(self, app: Flask, request: Request) -> ConversationSession:
        return self.session_class(verify=lambda: self.verify(app, request))

    def verify(self, app: Flask, request: Request) -> tuple[dict, str, str]:
        """Verify the request's cookie: (the conversation it holds, the pair's hash, why it is empty)."""
        numbers = getattr(request, "number_pair", None)
        if numbers is None:  # not a readable webhook: nothing to bind a conversation to
            return {}, "", ""
        keys = self.pair_keys(app)
        pair = pair_hash(keys[0], *numbers)
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return {}, pair, "new"
        max_age = int(app.permanent_session_lifetime.total_seconds())
        try:
            data = self.get_signing_serializer(app).loads(value, max_age=max_age)
        except SignedInTheFuture:
            return {}, pair, "future"
        except SignatureExpired:
            return {}, pair, "expired"
        except BadSignature:
            return {}, pair, "bad_signature" if "." in value else "garbage"
        except (BadData, ValueError):
            return {}, pair, "garbage"
        if not is_conversation(data):  # signed by us, but not in the format this version writes
            return {}, pair, "old_format"
        if data["p"] != pair and data["p"] not in [pair_hash(k, *numbers) for k in keys[1:]]:
            return {}, pair, "other_pair"
        return {"n": data["n"], "m": data["m"]}, pair, ""

    def save_session(self, app: Flask, session: ConversationSession, response: Response) -> None:
        if session.accessed:
            response.vary.add("Cookie")
        # Twilio keeps cookies from successful answers only; a refused request changes nothing (and its
        # cookie stays unverified).
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
        payload = {"v": FORMAT_VERSION, "p": session.pair, "n": session["n"], "m": session["m"]}
        value = self.get_signing_serializer(app).dumps(payload)
        max_age = int(app.permanent_session_lifetime.total_seconds())
        response.headers.add("Set-Cookie", self.cookie_header(name, value, max_age, attributes))

    def cookie_header(self, name: str, value: str, max_age: int, attributes: dict) -> str:
        """Return what `response.set_cookie` would send, Werkzeug's dump_cookie run once a second, not per reply."""
        # The header changes only with the value and, through Expires (now + Max-Age), with the second.
        key = (name, max_age, int(time.time()), tuple(attributes.items()))
        if self._cookie_template[0] != key:
            template = dump_cookie(name, VALUE_MARK, max_age=max_age, **attributes)
            self._cookie_template = (key, template)
        return self._cookie_template[1].replace(VALUE_MARK, value)
