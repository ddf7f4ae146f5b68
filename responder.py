"""The Twilio SMS webhook: app factory, session boundary, signature guard and TwiML."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, abort, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.sansio.utils import get_current_url

import callers
import config
from chat import chat_command
from conversation import DEFAULT_NAME, Conversation, Inbound, Texts, step

COOKIE_NAME = "conversation"
COOKIE_VERSION = 1
MAX_BODY_BYTES = 64 * 1024
FORM_MIMETYPE = "application/x-www-form-urlencoded"
DIRECTORY_RECHECK_SECONDS = 5.0
ROOT = Path(__file__).resolve().parent

log = logging.getLogger("responder")
_warned: set[str] = set()


# ---- the session boundary -------------------------------------------------------------------


class CompactJSON:
    """Serialize the cookie payload as compact JSON (no tags: it only holds strings and ints)."""

    @staticmethod
    def dumps(value: object) -> str:
        return json.dumps(value, separators=(",", ":"))

    @staticmethod
    def loads(value: str | bytes) -> object:
        return json.loads(value)


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
            self._serializers[keys] = super().get_signing_serializer(app)
        return self._serializers[keys]

    def open_session(self, app: Flask, request) -> ConversationCookie:
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class()
        try:
            data = self.get_signing_serializer(app).loads(value)
            if not isinstance(data, dict):
                raise BadSignature("not a mapping")
            return self.session_class(data)
        except BadSignature:
            cookie = self.session_class()
            cookie.refused_because = "bad_signature" if "." in value else "garbage"
            return cookie
        except Exception:  # a cookie must never turn into a 5xx
            cookie = self.session_class()
            cookie.refused_because = "garbage"
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


# ---- signatures -----------------------------------------------------------------------------


def _with_base(url: str, scheme: str | None = None, netloc: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme or parts.scheme, netloc or parts.netloc, parts.path, parts.query, ""))


def _without_query(url: str) -> str:
    """Shorten a URL for the logs: a GET webhook's query holds phone numbers and the body."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "…" if parts.query else "", ""))


@functools.lru_cache(maxsize=256)
def signed_url(public_url: str, scheme: str, host: str, root: str, path: str, query: bytes) -> str:
    """Build the URL a signature covers; POSTs all share one, so it is worth remembering."""
    own = get_current_url(scheme, host, root, path, query)
    if not public_url:
        return own
    base, parts = urlsplit(public_url), urlsplit(own)
    return urlunsplit((base.scheme, base.netloc, base.path + parts.path, parts.query, ""))


class SignedParams(dict):
    """Form fields as RequestValidator reads them: name -> all values, looked up with `getall`."""

    def getall(self, name: str) -> list[str]:
        return self[name]


class SignatureGuard:
    """Check X-Twilio-Signature with RequestValidator against the URL Twilio was given."""

    def __init__(self, tokens: tuple[str, ...], public_url: str):
        self.validators = [RequestValidator(t) for t in tokens]
        self.public_url = public_url

    def url_for(self, req) -> str:
        """Return the URL Twilio signed: PUBLIC_URL + path + query, else the request's own URL."""
        return signed_url(self.public_url, req.scheme, req.host, req.root_path, req.path, req.query_string)

    def signs(self, url: str, params, signature: str) -> bool:
        expected = signature.encode()
        for validator in self.validators:
            # The exact URL first: one HMAC, where validate() always computes two (with and without port).
            exact = validator.compute_signature(url, params).encode()
            if hmac.compare_digest(exact, expected) or validator.validate(url, params, signature):
                return True
        return False

    def is_valid(self, req, params) -> bool:
        signature = req.headers.get("X-Twilio-Signature", "")
        return bool(signature) and self.signs(self.url_for(req), params, signature)

    def diagnose(self, req, params) -> str:
        """Say which URL variant would have matched and which setting to change."""
        signature = req.headers.get("X-Twilio-Signature", "")
        if not signature:
            return "no X-Twilio-Signature header: the request did not come from Twilio"
        checked = self.url_for(req)
        parts = urlsplit(checked)
        forwarded_proto = req.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        forwarded_host = req.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        forwarded_port = req.headers.get("X-Forwarded-Port", "").split(",")[0].strip()
        variants = [(_with_base(checked, scheme="https" if parts.scheme == "http" else "http"), "scheme")]
        if forwarded_port.isdigit():
            variants.append((_with_base(checked, netloc=f"{parts.hostname}:{forwarded_port}"), "port"))
        if forwarded_proto or forwarded_host:
            variants.append(
                (_with_base(checked, forwarded_proto or None, forwarded_host or None), "forwarded")
            )
            variants.append((_with_base(checked, "https", forwarded_host or None), "forwarded"))
        if self.public_url:
            variants.append((req.url, "request"))
        advice = {
            "scheme": "set PUBLIC_URL to the exact base URL in the Twilio Console, or TRUSTED_PROXIES "
            "to the number of proxies that set X-Forwarded-Proto",
            "port": "set PUBLIC_URL to the exact base URL in the Twilio Console, port included",
            "forwarded": "set TRUSTED_PROXIES to the number of proxies in front of the service, or PUBLIC_URL",
            "request": "PUBLIC_URL does not match the URL Twilio calls; correct or unset it",
        }
        for url, kind in variants:
            if url != checked and self.signs(url, params, signature):
                return (
                    f"signature matches {_without_query(url)} but {_without_query(checked)} was checked: "
                    f"{advice[kind]}; request refused"
                )
        return (
            f"signature does not match {_without_query(checked)} under any known variant (wrong auth token?)"
        )


# ---- caller directory -----------------------------------------------------------------------


class DirectoryHolder:
    """The caller directory, reloaded when its file changes; a bad reload keeps the old one."""

    def __init__(self, path: str, region: str, clock: Callable[[], float]):
        self.path, self.region, self.clock = path, region, clock
        self.directory = callers.Directory()
        self.problem = ""
        self.checked_at = 0.0
        self.mtime = None
        if path:
            self.directory = callers.load_directory(path, region)  # a bad file stops start-up
            self.mtime = Path(path).stat().st_mtime
            for warning in self.directory.warnings:
                log.warning("caller directory: %s", warning)

    def current(self) -> callers.Directory:
        if self.path and self.clock() - self.checked_at >= DIRECTORY_RECHECK_SECONDS:
            self.checked_at = self.clock()
            self.reload_if_changed()
        return self.directory

    def reload_if_changed(self) -> None:
        try:
            mtime = Path(self.path).stat().st_mtime
            if mtime == self.mtime:
                return
            self.directory = callers.load_directory(self.path, self.region)
            self.mtime, self.problem = mtime, ""
        except (OSError, callers.DirectoryError) as exc:
            self.problem = str(exc)
            log.warning("caller directory not reloaded, keeping the previous one: %s", exc)


# ---- logs -----------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """Format records as one JSON object per line, with the webhook's fields when present."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(record.created, 3), "level": record.levelname.lower(), "msg": record.getMessage()}
        line.update(getattr(record, "webhook", {}))
        return json.dumps(line, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Format records as readable `key=value` lines for development."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "webhook", {}).items())
        return f"{record.levelname} {record.getMessage()} {fields}".rstrip()


def configure_logging(production: bool) -> None:
    """Send the service's logs to stderr: JSON lines in production, readable text in development."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    if production:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = True


# ---- the webhook ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def twiml_for(reply: str) -> str:
    """Render a reply (or nothing) as TwiML; replies repeat a lot, so remember the recent ones."""
    response = MessagingResponse()
    if reply:
        response.message(reply)
    return response.to_xml()


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
        MAX_FORM_MEMORY_SIZE=MAX_BODY_BYTES,
    )
    app.session_interface = ConversationSessionInterface(settings.idle_seconds)
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)
    app.extensions["responder"] = settings

    try:
        directory = DirectoryHolder(settings.callers_file, settings.default_region, clock)
    except callers.DirectoryError as exc:
        raise config.ConfigError([f"CALLERS_FILE: {exc}"]) from None
    guard = SignatureGuard(settings.auth_tokens, settings.public_url)
    texts = Texts(greeting=settings.greeting, count_reply=settings.count_reply, help=settings.help_text)
    keys = pair_keys([settings.secret_key, *settings.secret_key_fallbacks])

    app.register_error_handler(HTTPException, plain_error)
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
        is_post = req.method == "POST"
        if is_post and req.mimetype != FORM_MIMETYPE:
            abort(415, f"send the webhook as {FORM_MIMETYPE} (Twilio's default)")
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
        pairs = [pair_hash(k, sender, recipient) for k in keys[:1]]
        cookie = session._get_current_object()
        conversation, fresh = load_conversation(cookie, pairs, now, settings.idle_seconds)
        if fresh == "other_pair" and len(keys) > 1:
            pairs += [pair_hash(k, sender, recipient) for k in keys[1:]]
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
