"""Flask's signed session cookie as the conversation store: compact, versioned, bound to its number pair.

The cookie holds {"v": format, "p": keyed hash of (From, To), "n": count, "m": last MessageSid
fingerprint}, signed by itsdangerous with its own timestamp, which `PERMANENT_SESSION_LIFETIME` bounds;
a timestamp a few minutes ahead (another instance's clock) is tolerated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

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

COOKIE_NAME = "conversation"
FORMAT_VERSION = 2  # 1 kept its own timestamp; the signature's timestamp does that now
# Another instance's clock may run ahead (or an NTP step put this one back): a cookie stamped up to this
# far in the future continues its conversation; further ahead, it is refused as `future`.
MAX_CLOCK_SKEW_SECONDS = 300


class SignedInTheFuture(SignatureExpired):
    """A valid signature whose timestamp is further ahead of this clock than any skew explains."""


class CompactJSON:
    """Serialize the payload as compact JSON (no tags: it only holds strings and ints)."""

    @staticmethod
    def dumps(value: object) -> str:
        return json.dumps(value, separators=(",", ":"))

    @staticmethod
    def loads(value: str | bytes) -> object:
        return json.loads(value)


class CachedKeySigner(TimestampSigner):
    """itsdangerous' timestamp signer, deriving each key once instead of on every sign and verify."""

    derived_keys: dict = {}  # noqa: RUF012 - a shared cache, keyed by the few configured keys

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        key = (secret_key or self.secret_keys[-1], self.salt, self.key_derivation, self.digest_method)
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
                raise SignedInTheFuture(f"signed {-age} s ahead of this clock", payload=value)
            if age > max_age:
                raise SignatureExpired(f"Signature age {age} > {max_age} seconds", payload=value)
        return (value, signed_at) if return_timestamp else value


class PlainPayloadSerializer(URLSafeTimedSerializer):
    """itsdangerous' URL-safe timed serializer, minus the zlib attempt: a payload this small never shrinks."""

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
    """One pair's conversation (`n`, `m`), the pair it is bound to, and why it opened empty ('' if not)."""

    def __init__(self, initial=None, pair: str = "", fresh: str = ""):
        super().__init__(initial)
        self.pair = pair
        self.fresh = fresh

    @property
    def permanent(self) -> bool:  # always: every cookie carries Max-Age, nothing to store for it
        return True

    @permanent.setter
    def permanent(self, value: bool) -> None:
        pass


class ConversationSessionInterface(SecureCookieSessionInterface):
    """Open the pair's conversation from its cookie (verified once) and write it back with `Max-Age`."""

    session_class = ConversationSession
    serializer = CompactJSON()
    # Flask's default wraps hashlib.sha1 in a Python function, which sends hmac down its slow pure-Python
    # path; the OpenSSL function itself gives the same signatures.
    digest_method = staticmethod(hashlib.sha1)

    def __init__(self) -> None:
        self._serializers: dict = {}
        self._pair_keys: dict = {}

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
                serializer=self.serializer,
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
        numbers = getattr(request, "number_pair", None)
        if numbers is None:  # not a readable webhook: nothing to bind a conversation to
            return self.session_class()
        keys = self.pair_keys(app)
        pair = pair_hash(keys[0], *numbers)
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class(pair=pair, fresh="new")
        max_age = int(app.permanent_session_lifetime.total_seconds())
        try:
            data = self.get_signing_serializer(app).loads(value, max_age=max_age)
        except SignedInTheFuture:
            return self.session_class(pair=pair, fresh="future")
        except SignatureExpired:
            return self.session_class(pair=pair, fresh="expired")
        except BadSignature:
            return self.session_class(pair=pair, fresh="bad_signature" if "." in value else "garbage")
        except (BadData, ValueError):
            return self.session_class(pair=pair, fresh="garbage")
        if not is_conversation(data):  # signed by us, but not in the format this version writes
            return self.session_class(pair=pair, fresh="old_format")
        if data["p"] != pair and data["p"] not in [pair_hash(k, *numbers) for k in keys[1:]]:
            return self.session_class(pair=pair, fresh="other_pair")
        return self.session_class({"n": data["n"], "m": data["m"]}, pair=pair)

    def save_session(self, app: Flask, session: ConversationSession, response: Response) -> None:
        if session.accessed:
            response.vary.add("Cookie")
        # Twilio keeps cookies from successful answers only; a refused request changes nothing.
        if not session.modified or not session.pair or response.status_code >= 400:
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
        response.set_cookie(name, value, max_age=max_age, **attributes)
