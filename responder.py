"""The Twilio SMS webhook: create_app() and the /sms view.

A webhook travels one way: request (webhook_request.py) -> signature (signatures.py) -> session, the
conversation's cookie (session_cookie.py) -> caller name (callers.py) -> the turn (turn.py: keywords,
retries, then the conversation's step) -> TwiML (twiml.py) + the session written back as Set-Cookie.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app, g, request, session
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.middleware.proxy_fix import ProxyFix

import callers
import config
from conversation import DEFAULT_NAME, Conversation
from logs import configure_logging, log
from metrics import Metrics
from session_cookie import COOKIE_NAME, ConversationSessionInterface, read_progress, write_progress
from signatures import SignatureGuard, SignatureRefused
from turn import ConversationBug, Inbound, fingerprint, take_turn
from twiml import twiml_response
from webhook_request import WebhookRequest

MAX_BODY_BYTES = 64 * 1024
MAX_FIELDS = 256  # Twilio sends a few dozen; an MMS with ten attachments stays well under 100
MAX_SID_CHARS = 64

webhook = Blueprint("webhook", __name__)


@dataclass(frozen=True)
class Responder:
    """What the view needs besides the request and app.config: conversation, signature guard, caller directory."""

    conversation: Conversation
    guard: SignatureGuard
    directory: callers.WatchedDirectory


class ConversationFailed(InternalServerError):
    """A conversation's step that raised or answered what cannot be kept; `problem` goes to the log only."""

    def __init__(self, problem: str):
        super().__init__()
        self.problem = problem


def media_count(raw: str) -> int:
    try:
        return max(0, min(int(raw), 100))
    except ValueError:
        return 0


@webhook.route("/sms", methods=["GET", "POST"], provide_automatic_options=False)
def sms() -> Response:
    """Answer one inbound message with TwiML, keeping the conversation in the session cookie."""
    started = time.perf_counter()
    # The objects behind Flask's proxies, looked up once: the view reads them a few dozen times.
    req: WebhookRequest = request._get_current_object()
    if req.method == "HEAD":  # Flask allows HEAD wherever GET is, but a webhook call must not be one
        abort(405, valid_methods=["GET", "POST"])
    responder: Responder = current_app.extensions["responder"]
    fields = req.webhook_fields
    responder.guard.check(req)
    if req.number_pair is None:
        missing = [name for name in ("From", "To") if not fields.first(name).strip()]
        abort(400, f"missing {' and '.join(missing)}")
    sender, recipient = req.number_pair

    sid = fields.first("MessageSid")[:MAX_SID_CHARS]
    inbound = Inbound(
        body=fields.first("Body"),
        sid_fingerprint=fingerprint(sid),
        num_media=media_count(fields.first("NumMedia", "0")),
        opt_out_type=fields.first("OptOutType"),
        name=responder.directory.current().name_for(sender, DEFAULT_NAME),
        sender=sender,
        recipient=recipient,
    )
    conversation_session = session._get_current_object()  # opened after the signature passed
    try:
        turn = take_turn(
            read_progress(conversation_session),
            inbound,
            time.time(),
            responder.conversation,
            current_app.config["HELP_TEXT"],
        )
    except ConversationBug as bug:
        raise ConversationFailed(bug.problem) from None
    write_progress(conversation_session, turn.progress)

    context = g._get_current_object()
    fresh_reason = context.fresh = conversation_session.fresh_reason
    context.outcome = turn.outcome
    line = {"sid": sid, "pair": conversation_session.pair[:12], "outcome": turn.outcome, "count": turn.count}
    if fresh_reason:
        line["fresh"] = fresh_reason
    line["ms"] = round((time.perf_counter() - started) * 1000, 2)
    level = logging.WARNING if fresh_reason not in ("", "new") else logging.INFO
    log.log(level, "webhook", extra={"webhook": line})
    return twiml_response(turn.reply)


def refuse(error: HTTPException) -> Response:
    """Answer every HTTP error as plain text, never an HTML page; log the webhook's refusals."""
    if request.blueprint == "webhook" or request.path == "/sms":  # a 405 is refused before routing
        if isinstance(error, SignatureRefused):
            line = {"outcome": "refused:signature", "why": error.diagnosis}
            line["sid"] = request.signed_fields.first("MessageSid")[:MAX_SID_CHARS]
        elif error.code == 500:
            cause = getattr(error, "original_exception", None) or error
            line = {"outcome": "error:500", "error": getattr(error, "problem", "") or type(cause).__name__}
        else:
            line = {"outcome": f"refused:{error.code}", "why": error.description}
        g.outcome = line["outcome"]
        log.warning("webhook refused" if error.code < 500 else "webhook failed", extra={"webhook": line})
    response = error.get_response()  # Werkzeug's answer, its headers (Allow on a 405) included, as text
    response.set_data(f"{error.code} {error.name}: {error.description}\n")
    response.content_type = "text/plain; charset=utf-8"
    return response


def create_app(test_config: Mapping | None = None, instance_path: str | None = None) -> Flask:
    """Build the responder from its settings (the environment and `.env`), with `test_config` over them.

    As in Flask's tutorial, `test_config` is Flask config: the service's own settings (SECRET_KEY,
    CONVERSATION, ...) are validated like the environment's; any other key (TESTING, ...) goes to app.config.
    """
    instance_path = instance_path or str(config.INSTANCE_PATH)
    test_config = dict(test_config or {})
    overrides = {k: str(v) for k, v in test_config.items() if k in config.VARIABLES}
    last_good = callers.LastGood.default(instance_path)  # a bad CALLERS_FILE edit never stops a worker's boot
    settings = config.load_settings(
        config.read_environment(overrides), Path(instance_path) / "dev-secret-key", last_good
    )
    configure_logging(settings.is_production)
    for warning in settings.warnings:
        log.warning("%s", warning)

    app = Flask(__name__, instance_path=instance_path, static_folder=None)  # no static files to serve
    app.request_class = WebhookRequest
    app.config.update(settings.flask_config())  # the one settings store from here on
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        MAX_FORM_PARTS=MAX_FIELDS,
    )
    app.config.from_mapping({k: v for k, v in test_config.items() if k not in config.VARIABLES})
    guard = SignatureGuard(app.config["TWILIO_AUTH_TOKENS"], app.config["PUBLIC_URLS"])
    app.session_interface = ConversationSessionInterface(guard, settings.conversation.key)
    metrics = Metrics()
    directory = callers.WatchedDirectory(
        app.config["CALLERS_FILE"],
        app.config["DEFAULT_REGION"],
        settings.directory,  # loaded (or the last good copy) while the settings were checked
        metrics.directory_loaded,
        last_good,
    )
    app.extensions["responder"] = Responder(settings.conversation, guard, directory)

    app.register_blueprint(webhook)
    app.register_error_handler(HTTPException, refuse)
    metrics.init_app(app)
    if app.config["TRUSTED_PROXIES"]:
        n = app.config["TRUSTED_PROXIES"]
        # Proto, Host (with any port) and For only: a client-supplied X-Forwarded-Port or -Prefix
        # that a proxy passes on unchanged must not reshape the URL the signature is checked against.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=0, x_prefix=0)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        """Answer ready whenever the app answers: a directory problem is a warning, the last good one serves."""
        # Nothing the app can detect after start-up stops it answering webhooks; an instance that cannot
        # answer them does not answer this either. So no 503: a shared CALLERS_FILE's bad edit must not
        # take every instance behind a load balancer out of rotation at once.
        answer = {
            "status": "ready",
            "signature_checks": guard.is_checking,
            "callers": len(directory.current()),
        }
        if directory.problem:
            answer["warnings"] = {"caller_directory": f"{directory.problem} (the previous directory serves)"}
        return answer

    return app
