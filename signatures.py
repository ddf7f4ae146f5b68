"""Twilio signature checks against the URL Twilio was given, and hints when they fail."""

from __future__ import annotations

import functools
import hmac
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator
from werkzeug.sansio.utils import get_current_url
from werkzeug.wsgi import get_host


def _with_base(url: str, scheme: str | None = None, netloc: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme or parts.scheme, netloc or parts.netloc, parts.path, parts.query, ""))


def _without_query(url: str) -> str:
    """Shorten a URL for the logs: a GET webhook's query holds phone numbers and the body."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "…" if parts.query else "", ""))


@functools.lru_cache(maxsize=256)
def signed_url(public_url: str, scheme: str, host: str, root: str, path: str, query: str) -> str:
    """Build the URL a signature covers; POSTs all share one, so it is worth remembering."""
    # The query exactly as sent: Twilio signs a GET webhook's parameters percent-encoded, and Werkzeug's
    # own URL would decode them (an emoji in the body would then fail every check).
    own = get_current_url(scheme, host, root, path) + (f"?{query}" if query else "")
    if not public_url:
        return own
    base, parts = urlsplit(public_url), urlsplit(own)
    return urlunsplit((base.scheme, base.netloc, base.path + parts.path, parts.query, ""))


def wsgi_text(value: str) -> str:
    """Decode a WSGI path (UTF-8 bytes carried as latin-1 text), as Werkzeug's request does."""
    return value.encode("latin1").decode("utf-8", "replace")


class SignedParams(dict):
    """Form fields as RequestValidator reads them: name -> all values, looked up with `getall`."""

    def getall(self, name: str) -> list[str]:
        return self[name]


class SignatureGuard:
    """Check X-Twilio-Signature with RequestValidator against the URL Twilio was given."""

    def __init__(self, tokens: tuple[str, ...], public_url: str):
        self.validators = [RequestValidator(t) for t in tokens]
        self.public_url = public_url

    def url_for(self, environ: dict, public_url: str | None = None) -> str:
        """Return the URL Twilio signed: PUBLIC_URL + path + query, else the request's own URL."""
        return signed_url(
            self.public_url if public_url is None else public_url,
            environ["wsgi.url_scheme"],
            get_host(environ),
            wsgi_text(environ.get("SCRIPT_NAME", "")),
            wsgi_text(environ.get("PATH_INFO", "")),
            environ.get("QUERY_STRING", ""),
        )

    def signs(self, url: str, params, signature: str) -> bool:
        expected = signature.encode()
        for validator in self.validators:
            # The exact URL first: one HMAC, where validate() always computes two (with and without port).
            exact = validator.compute_signature(url, params).encode()
            if hmac.compare_digest(exact, expected):
                return True
            try:
                if validator.validate(url, params, signature):
                    return True
            except ValueError:  # a URL whose port or host does not parse matches nothing
                pass
        return False

    def is_valid(self, environ: dict, params) -> bool:
        signature = environ.get("HTTP_X_TWILIO_SIGNATURE", "")
        return bool(signature) and self.signs(self.url_for(environ), params, signature)

    def diagnose(self, req, params) -> str:
        """Say which URL variant would have matched and which setting to change."""
        signature = req.headers.get("X-Twilio-Signature", "")
        if not signature:
            return "no X-Twilio-Signature header: the request did not come from Twilio"
        checked = self.url_for(req.environ)
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
            variants.append((self.url_for(req.environ, public_url=""), "request"))
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
