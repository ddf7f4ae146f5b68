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
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from flask import Flask, Response
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature, TimestampSigner
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    HTTPException,
    InternalServerError,
    LengthRequired,
    MethodNotAllowed,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)
from werkzeug.http import dump_cookie
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.sansio.http import parse_cookie
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_content_length, get_input_stream

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
TWIML_MIMETYPE = "text/xml; charset=utf-8"
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


class ConversationSessionInterface(SecureCookieSessionInterface):
    """Flask's signed session cookie, read and written at the webhook's boundary, with `Max-Age` on every reply."""

    serializer = CompactJSON()
    # Flask's default wraps hashlib.sha1 in a Python function, which sends hmac down its slow pure-Python
    # path; the OpenSSL function itself gives the same signatures.
    digest_method = staticmethod(hashlib.sha1)

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

    def read_cookie(self, app: Flask, value: str | None) -> tuple[dict, str]:
        """Return the cookie's payload and '', or an empty payload and why the cookie was refused."""
        if not value:
            return {}, ""
        try:
            data = self.get_signing_serializer(app).loads(value)
        except BadSignature:
            return {}, "bad_signature" if "." in value else "garbage"
        except Exception:  # a cookie must never turn into a 5xx
            return {}, "garbage"
        if not isinstance(data, dict):  # signed by us, but not a conversation: a format we no longer write
            return {}, "old_format"
        return data, ""

    def cookie_header(self, app: Flask, data: dict | None) -> str:
        """Return the Set-Cookie value that stores `data`, or that deletes the cookie for None."""
        name, secure = self.get_cookie_name(app), self.get_cookie_secure(app)
        if data is None:
            return dump_cookie(name, "", max_age=0, expires=0, path="/", secure=secure, httponly=True)
        value = self.get_signing_serializer(app).dumps(data)
        return dump_cookie(
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


def load_conversation(payload: Mapping, pairs: list[str], now: float, idle: int) -> tuple[Conversation, str]:
    """Read the conversation from a cookie's payload; return it and why it starts fresh ('' if it does not)."""
    if not payload:
        return Conversation(), ""
    if payload.get("v") != COOKIE_VERSION:
        return Conversation(), "old_format"
    count, seen, last, pair = payload.get("n"), payload.get("t"), payload.get("m", ""), payload.get("p")
    if not (isinstance(count, int) and isinstance(seen, int) and isinstance(last, str) and count >= 0):
        return Conversation(), "old_format"
    if pair not in pairs:
        return Conversation(), "other_pair"
    if now - seen > idle:
        return Conversation(), "expired"
    return Conversation(count=count, last_message=last), ""


def save_conversation(conversation: Conversation | None, pair: str, now: float) -> dict | None:
    """Return the cookie payload that keeps a conversation (None: delete the cookie)."""
    if conversation is None:
        return None
    return {
        "v": COOKIE_VERSION,
        "p": pair,
        "n": conversation.count,
        "m": conversation.last_message,
        "t": int(now),
    }


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


def plain_error(error: HTTPException) -> tuple[str, list[tuple[str, str]], bytes]:
    """Answer an HTTP error as plain text, never an HTML page: (status, headers, body)."""
    body = f"{error.code} {error.name}: {error.description}\n".encode()
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    headers += [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return f"{error.code} {error.name.upper()}", headers, body


def read_params(environ: dict) -> tuple[dict[str, str], SignedParams]:
    """Return the webhook's parameters (first value of each name) and the fields its signature covers."""
    method = environ.get("REQUEST_METHOD", "GET").upper()
    if method == "GET":  # its parameters are part of its signed URL
        query = environ.get("QUERY_STRING", "").encode("latin1").decode("utf-8", "replace")
        pairs, signed = parse_form(query), SignedParams()
    elif method == "POST":  # its parameters are signed as fields
        pairs = read_form(environ)
        signed = SignedParams()
        for name, value in pairs:
            signed.setdefault(name, []).append(value)
    else:  # HEAD too: Flask would allow it wherever GET is, but a webhook call must not be one
        raise MethodNotAllowed(["GET", "POST"])
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields, signed


def read_form(environ: dict) -> list[tuple[str, str]]:
    """Read a POST's fields: form-encoded, with a Content-Length, at most MAX_BODY_BYTES."""
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if mimetype != FORM_MIMETYPE:
        raise UnsupportedMediaType(f"send the webhook as {FORM_MIMETYPE} (Twilio's default)")
    length = get_content_length(environ)
    if length is None:  # chunked: servers treat such bodies differently
        raise LengthRequired("send the webhook with a Content-Length header, as Twilio does")
    if length > MAX_BODY_BYTES:
        raise RequestEntityTooLarge(f"the webhook's body is over {MAX_BODY_BYTES // 1024} KiB")
    body = get_input_stream(environ, max_content_length=MAX_BODY_BYTES).read()
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8 text") from None
    return parse_form(text)


def parse_form(text: str) -> list[tuple[str, str]]:
    """Split form-encoded text into (name, value) pairs, decoding bad escapes as Werkzeug does."""
    return parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote")


def media_count(raw: str) -> int:
    try:
        return max(0, min(int(raw), 100))
    except ValueError:
        return 0


class Webhook:
    """Answer Twilio's webhook at /sms as a plain WSGI app; Flask serves every other route.

    Flask's request context, form parser and response object cost more per message than everything
    the webhook itself does (bench/RESULTS.md), so /sms reads its environ directly. The cookie is still
    Flask's session cookie, signed and read by the app's session interface.
    """

    def __init__(self, app: Flask, settings: config.Settings, directory, guard: SignatureGuard, clock):
        self.app, self.settings, self.directory, self.guard, self.clock = (
            app,
            settings,
            directory,
            guard,
            clock,
        )
        self.cookies: ConversationSessionInterface = app.session_interface
        self.texts = Texts(
            greeting=settings.greeting, count_reply=settings.count_reply, help=settings.help_text
        )
        self.keys = pair_keys([settings.secret_key, *settings.secret_key_fallbacks])

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        started = time.perf_counter()
        try:
            status, headers, body = self.answer(environ, started)
        except HTTPException as error:
            if error.code != 403:  # a 403 is logged with its diagnosis
                fields = {"outcome": f"refused:{error.code}", "why": error.description}
                log.warning("webhook refused", extra={"webhook": fields})
            status, headers, body = plain_error(error)
        except Exception as exc:
            fields = {"outcome": "error:500", "error": type(exc).__name__}
            log.exception("webhook failed", extra={"webhook": fields})
            status, headers, body = plain_error(InternalServerError())
        start_response(status, headers)
        return [] if environ.get("REQUEST_METHOD", "").upper() == "HEAD" else [body]

    def answer(self, environ: dict, started: float) -> tuple[str, list[tuple[str, str]], bytes]:
        """Answer one webhook call: (status, headers, body), or raise the HTTP error that refuses it."""
        params, signed = read_params(environ)
        sid = params.get("MessageSid", "")[:64]
        if self.guard.validators and not self.guard.is_valid(environ, signed):
            why = self.guard.diagnose(Request(environ), signed)
            log.warning(
                "webhook refused", extra={"webhook": {"sid": sid, "outcome": "refused:signature", "why": why}}
            )
            raise Forbidden("invalid or missing X-Twilio-Signature")
        sender, recipient = params.get("From", "").strip(), params.get("To", "").strip()
        missing = [name for name, value in (("From", sender), ("To", recipient)) if not value]
        if missing:
            raise BadRequest(f"missing {' and '.join(missing)}")

        now = self.clock()
        pairs = [pair_hash(k, sender, recipient) for k in self.keys]  # current key first, then fallbacks
        value = parse_cookie(environ.get("HTTP_COOKIE")).get(COOKIE_NAME)
        payload, refused = self.cookies.read_cookie(self.app, value)
        conversation, fresh = load_conversation(payload, pairs, now, self.settings.idle_seconds)
        fresh = refused or fresh
        message = Inbound(
            body=params.get("Body", ""),
            message_id=message_fingerprint(sid),
            num_media=media_count(params.get("NumMedia", "0")),
            opt_out_type=params.get("OptOutType", ""),
            name=self.directory.current().name_for(sender, DEFAULT_NAME),
            to=recipient,
        )
        result = step(conversation, message, self.texts)
        cookie = self.cookies.cookie_header(self.app, save_conversation(result.conversation, pairs[0], now))
        body = twiml_for(result.reply)

        count = result.conversation.count if result.conversation else 0
        fields = {"sid": sid, "pair": pairs[0][:12], "count": count, "outcome": result.outcome}
        if fresh:
            fields["fresh"] = fresh
        fields["ms"] = round((time.perf_counter() - started) * 1000, 2)
        log.log(logging.WARNING if fresh else logging.INFO, "webhook", extra={"webhook": fields})
        headers = [
            ("Content-Type", TWIML_MIMETYPE),
            ("Content-Length", str(len(body))),
            ("Set-Cookie", cookie),
        ]
        return "200 OK", headers, body


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
    app.extensions["responder"] = settings

    try:
        directory = callers.WatchedDirectory(settings.callers_file, settings.default_region, clock)
    except callers.DirectoryError as exc:
        raise config.ConfigError([f"CALLERS_FILE: {exc}"]) from None
    guard = SignatureGuard(settings.auth_tokens, settings.public_url)
    webhook = Webhook(app, settings, directory, guard, clock)
    flask_routes = app.wsgi_app

    def route(environ: dict, start_response) -> list[bytes]:
        if environ.get("PATH_INFO") == "/sms":
            return webhook(environ, start_response)
        return flask_routes(environ, start_response)

    app.wsgi_app = route
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        # Proto, Host (with any port) and For only: a client-supplied X-Forwarded-Port or -Prefix
        # that a proxy passes on unchanged must not reshape the URL the signature is checked against.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=0, x_prefix=0)

    @app.errorhandler(HTTPException)
    def refuse(error: HTTPException) -> Response:
        status, headers, body = plain_error(error)
        return Response(body, status=status, headers=headers)

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

    return app
