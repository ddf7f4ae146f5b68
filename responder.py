"""The Twilio SMS webhook: app factory, session boundary, signature guard and TwiML."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from xml.sax.saxutils import escape

from flask import Flask, Response, abort, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature, TimestampSigner
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

import callers
import config
from chat import chat_command
from conversation import DEFAULT_NAME, Conversation, Inbound, Texts, step
from logs import configure_logging, log
from signatures import SignatureGuard, SignedParams

COOKIE_NAME = "conversation"
COOKIE_VERSION = 1
MAX_BODY_BYTES = 64 * 1024
FORM_MIMETYPE = "application/x-www-form-urlencoded"
ROOT = Path(__file__).resolve().parent

_warned: set[str] = set()


class CompactJSON:
    """Serialize the cookie payload as compact JSON (no tags: it only holds strings and ints)."""

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


class ConversationCookie(SecureCookieSession):
    """Flask's signed-cookie session that also remembers why an incoming cookie was refused."""

    refused_because = ""


class ConversationSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session with a reason for refusals and a `Max-Age` on every reply."""

    serializer = CompactJSON()
    session_class = ConversationCookie

    def __init__(self, max_age: int):
        self.max_age = max_age
        self._serializers: dict = {}

    def get_signing_serializer(self, app: Flask):
        """Build the (key-rotation-aware) serializer once per key set instead of per request."""
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if keys not in self._serializers:
            serializer = super().get_signing_serializer(app)
            serializer.signer = CachedKeySigner  # same signatures as Flask's, fewer HMACs
            self._serializers[keys] = serializer
        return self._serializers[keys]

    def open_session(self, app: Flask, request) -> ConversationCookie:
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class()
        try:
            data = self.get_signing_serializer(app).loads(value)
        except BadSignature:
            return self.refused("bad_signature" if "." in value else "garbage")
        except Exception:  # a cookie must never turn into a 5xx
            return self.refused("garbage")
        if not isinstance(data, dict):  # signed by us, but not a conversation: a format we no longer write
            return self.refused("old_format")
        return self.session_class(data)

    def refused(self, reason: str) -> ConversationCookie:
        """Return an empty session that says why the incoming cookie was not used."""
        cookie = self.session_class()
        cookie.refused_because = reason
        return cookie

    def save_session(self, app: Flask, session, response: Response) -> None:
        name = self.get_cookie_name(app)
        secure = self.get_cookie_secure(app)
        if not session:
            if session.modified:
                response.delete_cookie(name, path="/", secure=secure, httponly=True)
            return
        if session.modified:
            value = self.get_signing_serializer(app).dumps(dict(session))
            response.set_cookie(
                name, value, max_age=self.max_age, path="/", secure=secure, httponly=True, samesite="Lax"
            )


def pair_keys(keys: list[str]) -> list[bytes]:
    """Derive the pair-binding keys from the signing keys (current first)."""
    return [hmac.new(k.encode(), b"responder.pair-binding", hashlib.sha256).digest() for k in keys]


def pair_hash(key: bytes, sender: str, recipient: str) -> str:
    """Return the keyed hash that binds a cookie to its (From, To) pair."""
    digest = hmac.new(key, f"{sender}\n{recipient}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:15]).decode()


def message_fingerprint(message_sid: str) -> str:
    """Return a short fingerprint of a MessageSid, enough to spot Twilio's retries."""
    if not message_sid:
        return ""
    return hashlib.blake2b(message_sid.encode(), digest_size=6).hexdigest()


def load_conversation(cookie: ConversationCookie, pairs: list[str], now: float, idle: int):
    """Read the conversation from the cookie; return (conversation, why it started fresh or '')."""
    if cookie.refused_because:
        return Conversation(), cookie.refused_because
    if not cookie:
        return Conversation(), ""
    data = dict(cookie)
    if data.get("v") != COOKIE_VERSION:
        return Conversation(), "old_format"
    count, seen, last, pair = data.get("n"), data.get("t"), data.get("m", ""), data.get("p")
    if not (isinstance(count, int) and isinstance(seen, int) and isinstance(last, str) and count >= 0):
        return Conversation(), "old_format"
    if pair not in pairs:
        return Conversation(), "other_pair"
    if now - seen > idle:
        return Conversation(), "expired"
    return Conversation(count=count, last_message=last), ""


def save_conversation(cookie, conversation: Conversation | None, pair: str, now: float) -> None:
    """Write the conversation into the cookie, or delete it."""
    cookie.clear()
    if conversation is not None:
        cookie.update(v=COOKIE_VERSION, p=pair, n=conversation.count, m=conversation.last_message, t=int(now))
    cookie.modified = True


# ---- the webhook ----------------------------------------------------------------------------


def message_envelope() -> tuple[bytes, bytes]:
    """Render a MessagingResponse with one <Message> once, split around where its text goes."""
    mark = "\x00"  # never inside the envelope itself
    response = MessagingResponse()
    response.message(mark)
    head, tail = response.to_xml().encode().split(mark.encode())
    return head, tail


EMPTY_TWIML = MessagingResponse().to_xml().encode()
MESSAGE_HEAD, MESSAGE_TAIL = message_envelope()


def twiml_for(reply: str) -> bytes:
    """Render a reply (or nothing) as TwiML, escaped exactly as MessagingResponse escapes it."""
    if not reply:
        return EMPTY_TWIML
    return MESSAGE_HEAD + escape(reply).encode("utf-8", "xmlcharrefreplace") + MESSAGE_TAIL


def twiml(reply: str) -> Response:
    return Response(twiml_for(reply), mimetype="text/xml")


def plain_error(error: HTTPException) -> Response:
    """Answer an HTTP error as plain text, never an HTML page."""
    response = error.get_response()
    response.set_data(f"{error.code} {error.name}: {error.description}\n")
    response.mimetype = "text/plain"
    return response


def media_count(raw: str) -> int:
    try:
        return max(0, min(int(raw), 100))
    except ValueError:
        return 0


def create_app(overrides: Mapping | None = None) -> Flask:
    """Build the responder; `overrides` (variable -> value) win over the environment and `.env`."""
    overrides = dict(overrides or {})
    clock: Callable[[], float] = overrides.pop("CLOCK", time.time)
    instance_path = overrides.pop("INSTANCE_PATH", None) or str(ROOT / "instance")
    settings = config.load_settings(
        config.read_environment(overrides), Path(instance_path) / "dev-secret-key"
    )
    configure_logging(settings.is_production)
    for warning in settings.warnings:
        if warning not in _warned:  # once per process, however many apps it builds
            _warned.add(warning)
            log.warning("%s", warning)

    app = Flask(__name__, instance_path=instance_path)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
    )
    app.session_interface = ConversationSessionInterface(settings.idle_seconds)
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        # Proto, Host (with any port) and For only: a client-supplied X-Forwarded-Port or -Prefix
        # that a proxy passes on unchanged must not reshape the URL the signature is checked against.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=0, x_prefix=0)
    app.extensions["responder"] = settings

    try:
        directory = callers.WatchedDirectory(settings.callers_file, settings.default_region, clock)
    except callers.DirectoryError as exc:
        raise config.ConfigError([f"CALLERS_FILE: {exc}"]) from None
    guard = SignatureGuard(settings.auth_tokens, settings.public_url)
    texts = Texts(greeting=settings.greeting, count_reply=settings.count_reply, help=settings.help_text)
    keys = pair_keys([settings.secret_key, *settings.secret_key_fallbacks])

    @app.errorhandler(HTTPException)
    def refuse(error: HTTPException) -> Response:
        if request.path == "/sms" and error.code != 403:  # a 403 is logged with its diagnosis
            fields = {"outcome": f"refused:{error.code}", "why": error.description}
            log.warning("webhook refused", extra={"webhook": fields})
        return plain_error(error)

    app.cli.add_command(chat_command)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        directory.current()
        if directory.problem:
            return {"status": "unavailable", "failing": {"caller_directory": directory.problem}}, 503
        return {
            "status": "ready",
            "signature_checks": guard.validators != [],
            "callers": len(directory.directory),
        }

    def sms():
        started = time.perf_counter()
        req = request._get_current_object()  # one context lookup instead of one per attribute
        if req.method == "HEAD":  # Flask allows HEAD wherever GET is; a webhook call must not be one
            abort(405, valid_methods=["GET", "POST"])
        is_post = req.method == "POST"
        if is_post and req.mimetype != FORM_MIMETYPE:
            abort(415, f"send the webhook as {FORM_MIMETYPE} (Twilio's default)")
        if is_post and req.content_length is None:  # chunked: servers treat such bodies differently
            abort(411, "send the webhook with a Content-Length header, as Twilio does")
        params = req.form if is_post else req.args
        sid = params.get("MessageSid", "")[:64]
        # A GET's parameters are part of its signed URL; a POST's are signed as fields.
        signed = SignedParams(params.lists()) if is_post else {}
        if guard.validators and not guard.is_valid(req, signed):
            why = guard.diagnose(req, signed)
            log.warning(
                "webhook refused", extra={"webhook": {"sid": sid, "outcome": "refused:signature", "why": why}}
            )
            abort(403, "invalid or missing X-Twilio-Signature")
        sender, recipient = params.get("From", "").strip(), params.get("To", "").strip()
        missing = [name for name, value in (("From", sender), ("To", recipient)) if not value]
        if missing:
            abort(400, f"missing {' and '.join(missing)}")

        now = clock()
        pairs = [pair_hash(k, sender, recipient) for k in keys]  # current key first, then fallbacks
        cookie = session._get_current_object()
        conversation, fresh = load_conversation(cookie, pairs, now, settings.idle_seconds)
        message = Inbound(
            body=params.get("Body", ""),
            message_id=message_fingerprint(sid),
            num_media=media_count(params.get("NumMedia", "0")),
            opt_out_type=params.get("OptOutType", ""),
            name=directory.current().name_for(sender, DEFAULT_NAME),
            to=recipient,
        )
        result = step(conversation, message, texts)
        save_conversation(cookie, result.conversation, pairs[0], now)

        count = result.conversation.count if result.conversation else 0
        fields = {"sid": sid, "pair": pairs[0][:12], "count": count, "outcome": result.outcome}
        if fresh:
            fields["fresh"] = fresh
        fields["ms"] = round((time.perf_counter() - started) * 1000, 2)
        log.log(logging.WARNING if fresh else logging.INFO, "webhook", extra={"webhook": fields})
        return twiml(result.reply)

    app.add_url_rule("/sms", "sms", sms, methods=["GET", "POST"], provide_automatic_options=False)
    return app
