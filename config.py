"""Settings from the environment (and `.env`), validated into one immutable value."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import click
import phonenumbers
from dotenv import dotenv_values
from flask.cli import NoAppException

import callers
import conversation
from conversation import MAX_BODY_CHARS
from greeting import DEFAULT_COUNT_REPLY, DEFAULT_GREETING, template_errors
from key_strength import secret_problem
from session_cookie import TWILIO_COOKIE_CAP_SECONDS

# Every variable the service reads (WEB_CONCURRENCY belongs to serve.py's server, not to the app).
VARIABLES = (
    "RESPONDER_ENV",
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_AUTH_TOKEN_SECONDARY",
    "PUBLIC_URL",
    "TRUSTED_PROXIES",
    "CONVERSATION_IDLE_SECONDS",
    "CALLERS_FILE",
    "DEFAULT_REGION",
    "HOST",
    "PORT",
    "GREETING_TEMPLATE",
    "COUNT_REPLY_TEMPLATE",
    "HELP_TEXT",
    "CONVERSATION",
)
INSTANCE_PATH = Path(__file__).resolve().parent / "instance"  # the development key lives here (git-ignored)
AUTH_TOKEN = re.compile(r"[0-9a-fA-F]{32}")  # what the Twilio Console shows
HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)
# Hosts copied from a template, never a webhook's: your-host, yourdomain.com, your-app..., host, domain.
PLACEHOLDER_HOST = re.compile(
    r"your[-_]?(host|domain|app|server|site|service|url|name)[^.]*(\..*)?|host(name)?|domain"
)


class ConfigError(NoAppException, ValueError):
    """Settings that cannot start the service; one line per problem."""

    # The flask command (flask --app responder ..., make chat) shows an app that cannot load as these
    # lines and exit status 2, never a traceback; `flask --help` shows them as its "Error:".
    exit_code = 2

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems

    def format_message(self) -> str:
        lines = [f"  - {problem}" for problem in self.problems]
        return "\n".join(["The responder cannot start; fix these settings:", *lines])

    def show(self, file=None) -> None:
        """Print the problems as `make run` does, one line each."""
        click.echo(self.format_message(), err=True)


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    env: str
    secret_key: str
    secret_key_fallbacks: tuple[str, ...]
    auth_tokens: tuple[str, ...]
    public_urls: tuple[str, ...]
    trusted_proxies: int
    idle_seconds: int
    callers_file: str
    default_region: str
    directory: callers.Directory
    host: str
    port: int
    greeting: str
    count_reply: str
    help_text: str
    conversation: conversation.Conversation
    warnings: tuple[str, ...] = ()

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def public_url(self) -> str:
        """The first PUBLIC_URL ('' when none is set)."""
        return self.public_urls[0] if self.public_urls else ""

    @property
    def checks_signatures(self) -> bool:
        return bool(self.auth_tokens)

    def flask_config(self) -> dict:
        """Map the settings into app.config: Flask's own keys, then the service's under their variable names."""
        return {
            "SECRET_KEY": self.secret_key,
            "SECRET_KEY_FALLBACKS": list(self.secret_key_fallbacks),
            "SESSION_COOKIE_SECURE": any(url.startswith("https://") for url in self.public_urls),
            "PERMANENT_SESSION_LIFETIME": timedelta(seconds=self.idle_seconds),
            "RESPONDER_ENV": self.env,
            "TWILIO_AUTH_TOKENS": self.auth_tokens,
            "PUBLIC_URLS": self.public_urls,
            "TRUSTED_PROXIES": self.trusted_proxies,
            "CALLERS_FILE": self.callers_file,
            "DEFAULT_REGION": self.default_region,
            "HOST": self.host,
            "PORT": self.port,
            "GREETING_TEMPLATE": self.greeting,
            "COUNT_REPLY_TEMPLATE": self.count_reply,
            "HELP_TEXT": self.help_text,
            "CONVERSATION": self.conversation.name,
        }

    @property
    def all_warnings(self) -> tuple[str, ...]:
        """Return every warning, the caller directory's duplicate rows included (what `make check` prints)."""
        return (*self.warnings, *(f"CALLERS_FILE: {w}" for w in self.directory.warnings))


def read_environment(overrides: Mapping[str, str] | None = None, dotenv: str = ".env") -> dict:
    """Merge `.env` (lowest), the process environment, then `overrides` (highest)."""
    values = {k: v for k, v in dotenv_values(dotenv).items() if v is not None}
    values.update(os.environ)
    values.update(overrides or {})
    return values


def development_secret(path: Path) -> str:
    """Return the development signing key kept at `path`, creating it once."""
    try:
        key = path.read_text(encoding="utf-8").strip()
        if not secret_problem("", key):
            return key
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    return key


def is_host_name(host: str) -> bool:
    """Tell whether `host` is an IP address or a DNS name (letters, digits and hyphens between dots)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        labels = host.encode("idna").decode("ascii").removesuffix(".").split(".")
    except UnicodeError:
        return False
    return all(HOST_LABEL.fullmatch(label) for label in labels)


def public_url_problem(url: str) -> str:
    """Return why a PUBLIC_URL would make every webhook's signature fail ('' when it is fine)."""
    example = "give the base URL Twilio calls, e.g. https://sms.example.com"
    if any(c.isspace() for c in url):
        return f"PUBLIC_URL={url!r} contains whitespace; {example}"
    if "<" in url or ">" in url:
        return f"PUBLIC_URL={url!r} still holds a <placeholder>; put your own host there: {example}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        return f"PUBLIC_URL={url!r}: {example}"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        return f"PUBLIC_URL={url!r}: the port must be a number from 1 to 65535 (or none)"
    if not is_host_name(parts.hostname or ""):
        return f"PUBLIC_URL={url!r}: {parts.hostname!r} is not a host name or IP address; {example}"
    if PLACEHOLDER_HOST.fullmatch(parts.hostname.removesuffix(".")):  # urlsplit lowercases it
        return f"PUBLIC_URL={url!r} still holds a placeholder host; put your own host there: {example}"
    if parts.path.endswith("/sms"):
        return (
            f"PUBLIC_URL={url!r} ends with /sms; drop /sms: the service adds it "
            f"(PUBLIC_URL={url.removesuffix('/sms')} for the webhook {url})"
        )
    return ""


def _integer(env: Mapping, name: str, default: int, low: int, high: int, why: str, problems: list):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{name}={raw!r} is not a whole number; {why}")
        return default
    if not low <= value <= high:
        problems.append(f"{name}={value} is out of range {low}..{high}; {why}")
        return default
    return value


def _template(env: Mapping, name: str, default: str, problems: list) -> str:
    value = env.get(name) or default
    for problem in template_errors(value):
        problems.append(f"{name}: {problem}")
    return value


def load_settings(
    env: Mapping[str, str], dev_secret_file: Path, last_good: callers.LastGood | None = None
) -> Settings:
    """Validate the environment into Settings; raise ConfigError naming every bad variable."""
    # With `last_good` (a worker booting), a caller directory that fails to load gives way to the last good
    # copy when there is one, with a warning; without it (the check at start-up), it is a problem.
    problems: list[str] = []
    warnings: list[str] = []

    mode = env.get("RESPONDER_ENV", "").strip().lower() or "production"
    if mode not in ("development", "production"):
        problems.append(f"RESPONDER_ENV={mode!r}: use 'development' or 'production'")
        mode = "production"
    production = mode == "production"

    secret_key = env.get("SECRET_KEY", "").strip()
    if secret_key:
        if problem := secret_problem("SECRET_KEY", secret_key):
            problems.append(problem)
    elif production:
        problems.append(
            "SECRET_KEY is not set; production needs a random key of at least 32 characters "
            "shared by every instance"
        )
    else:
        secret_key = development_secret(dev_secret_file)

    fallbacks = tuple(k.strip() for k in env.get("SECRET_KEY_FALLBACKS", "").split(",") if k.strip())
    for i, key in enumerate(fallbacks, 1):
        if problem := secret_problem(f"SECRET_KEY_FALLBACKS (key {i})", key):
            problems.append(problem)

    tokens = tuple(
        t
        for t in (
            env.get("TWILIO_AUTH_TOKEN", "").strip(),
            env.get("TWILIO_AUTH_TOKEN_SECONDARY", "").strip(),
        )
        if t
    )
    if env.get("TWILIO_AUTH_TOKEN_SECONDARY", "").strip() and not env.get("TWILIO_AUTH_TOKEN", "").strip():
        problems.append("TWILIO_AUTH_TOKEN_SECONDARY is set without TWILIO_AUTH_TOKEN; set the primary too")
    for name in ("TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_SECONDARY"):
        token = env.get(name, "").strip()
        if token and not AUTH_TOKEN.fullmatch(token):
            problems.append(
                f"{name} is not a Twilio auth token (32 hexadecimal characters); copy it from the Twilio "
                "Console under Account > API keys & tokens"
            )
    if secret_key and secret_key in tokens:
        problems.append("SECRET_KEY is the Twilio auth token; the cookie key must be a secret of its own")
    if production and not tokens:
        problems.append(
            "TWILIO_AUTH_TOKEN is not set; production checks every webhook's X-Twilio-Signature "
            "(find the token in the Twilio Console under Account > API keys & tokens)"
        )
    if not production and not tokens:
        warnings.append(
            "TWILIO_AUTH_TOKEN is not set: webhook signatures are NOT checked. "
            "Anyone who can reach this server can post to /sms. Development only."
        )

    public_urls = tuple(u.strip().rstrip("/") for u in env.get("PUBLIC_URL", "").split(",") if u.strip())
    for url in public_urls:
        if problem := public_url_problem(url):
            problems.append(problem)
        elif production and url.startswith("http://"):
            warnings.append(
                f"PUBLIC_URL={url!r} is plain http: webhooks and their conversation cookies cross the "
                "network unencrypted; give Twilio an https:// URL in production"
            )
    if production and not public_urls:
        problems.append(
            "PUBLIC_URL is not set; production checks signatures against the URL Twilio calls only: set it to "
            "the webhook URL in the Twilio Console without /sms (e.g. https://sms.example.com; several, "
            "comma-separated)"
        )

    trusted_proxies = _integer(
        env, "TRUSTED_PROXIES", 0, 0, 10, "the number of reverse proxies in front of the service", problems
    )
    idle_seconds = _integer(
        env,
        "CONVERSATION_IDLE_SECONDS",
        TWILIO_COOKIE_CAP_SECONDS,
        1,
        TWILIO_COOKIE_CAP_SECONDS,
        "Twilio keeps a conversation's cookie for at most 4 hours (14400 s)",
        problems,
    )
    port = _integer(env, "PORT", 5000, 1, 65535, "a TCP port", problems)

    region = env.get("DEFAULT_REGION", "").strip().upper() or "US"
    if region not in phonenumbers.SUPPORTED_REGIONS:
        problems.append(f"DEFAULT_REGION={region!r} is not a two-letter region code such as US or GB")

    callers_file = env.get("CALLERS_FILE", "").strip()
    directory = callers.Directory()
    if callers_file:
        try:
            directory = callers.load_directory(callers_file, region)
        except callers.DirectoryError as exc:
            kept = last_good.load(callers_file, region) if last_good else None
            if kept is None:
                problems.extend(f"CALLERS_FILE: {problem}" for problem in exc.problems)
            else:  # a worker booting after a bad edit: the instance goes on with what it served
                directory = replace(kept, stamp=exc.stamp, problem=str(exc))
                warnings.append(
                    f"CALLERS_FILE: {exc}; serving the last good copy (entries: {len(kept)}) until it is fixed"
                )
        else:
            if last_good:
                last_good.save(callers_file, directory)

    target = env.get("CONVERSATION", "").strip() or conversation.BUILT_IN
    try:
        chosen = conversation.load(target)
    except conversation.ConversationError as exc:
        problems.append(f"CONVERSATION={target!r}: {exc}")
        chosen = conversation.load(conversation.BUILT_IN)

    settings = Settings(
        env=mode,
        secret_key=secret_key,
        secret_key_fallbacks=fallbacks,
        auth_tokens=tokens,
        public_urls=public_urls,
        trusted_proxies=trusted_proxies,
        idle_seconds=idle_seconds,
        callers_file=callers_file,
        default_region=region,
        directory=directory,
        host=env.get("HOST", "").strip() or "127.0.0.1",
        port=port,
        greeting=_template(env, "GREETING_TEMPLATE", DEFAULT_GREETING, problems),
        count_reply=_template(env, "COUNT_REPLY_TEMPLATE", DEFAULT_COUNT_REPLY, problems),
        help_text=env.get("HELP_TEXT", "").strip(),
        conversation=chosen,
        warnings=tuple(warnings),
    )
    if len(settings.help_text) > MAX_BODY_CHARS:
        problems.append(f"HELP_TEXT is longer than Twilio's {MAX_BODY_CHARS}-character limit")
    if problems:
        raise ConfigError(problems)
    return settings
