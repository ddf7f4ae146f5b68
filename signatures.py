"""Twilio signature checks against the URL Twilio was given, and hints when they fail."""

from __future__ import annotations

import functools
import hmac
import time
from urllib.parse import urlsplit, urlunsplit

from flask import Request
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import Forbidden
from werkzeug.sansio.utils import get_current_url

DIAGNOSIS_INTERVAL = 1.0  # seconds between two refusal diagnoses, per worker: each costs a few HMACs

ADVICE = {
    "scheme": "set PUBLIC_URL to the exact base URL in the Twilio Console, or TRUSTED_PROXIES "
    "to the number of proxies that set X-Forwarded-Proto",
    "port": "set PUBLIC_URL to the exact base URL in the Twilio Console, port included",
    "forwarded": "set TRUSTED_PROXIES to the number of proxies in front of the service, or PUBLIC_URL",
    "request": "PUBLIC_URL does not match the URL Twilio calls; set it to the base of the URL in the Twilio Console",
}


class SignatureRefused(Forbidden):
    """A webhook without a valid X-Twilio-Signature; `diagnosis` is for the log, never for the client."""

    description = "invalid or missing X-Twilio-Signature"

    def __init__(self, diagnosis: str):
        super().__init__()
        self.diagnosis = diagnosis


def _with_base(url: str, scheme: str | None = None, netloc: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme or parts.scheme, netloc or parts.netloc, parts.path, parts.query, ""))


def _without_query(url: str) -> str:
    """Shorten a URL for the logs: a GET webhook's query holds phone numbers and the body."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "…" if parts.query else "", ""))


def _first(value: str | None) -> str:
    return (value or "").split(",")[0].strip()


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


class SignatureGuard:
    """Check X-Twilio-Signature with RequestValidator against the URL Twilio was given."""

    def __init__(self, tokens: tuple[str, ...], public_urls: tuple[str, ...]):
        self.validators = [RequestValidator(t) for t in tokens]
        self.public_urls = public_urls or ("",)  # '': the request's own URL (development only)
        self.diagnosed_at = -DIAGNOSIS_INTERVAL

    @property
    def is_checking(self) -> bool:
        return bool(self.validators)

    def signed_url_for(self, request: Request, public_url: str) -> str:
        """Return the URL Twilio signed: a PUBLIC_URL + path + query, or the request's own URL for ''."""
        return signed_url(
            public_url,
            request.scheme,
            "" if public_url else request.host,  # PUBLIC_URL names the host: the request's is not read
            # ... and the mount point too: it ends where the app's own path (/sms) begins, whether a proxy
            # strips the prefix or the app is mounted under it (SCRIPT_NAME, e.g. DispatcherMiddleware).
            "" if public_url else request.root_path,
            request.path,
            request.query_string.decode("latin1"),
        )

    def accepts(self, url: str, params, signature: str) -> bool:
        """Tell whether `signature` is Twilio's for this URL and these fields, under any configured token."""
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

    def check(self, request: Request) -> None:
        """Raise SignatureRefused unless the request carries a valid signature (when checks are on)."""
        if refusal := self.refusal(request):
            raise refusal

    def refusal(self, request: Request) -> SignatureRefused | None:
        """Check the request's signature once; return why it is refused, or None when it passes."""
        try:
            return request.signature_refusal
        except AttributeError:
            request.signature_refusal = refusal = self.judge(request)
            return refusal

    def judge(self, request: Request) -> SignatureRefused | None:
        """Check the signature: a refusal saying why, or None when it passes (or checks are off)."""
        if not self.validators:
            return None
        signature = request.headers.get("X-Twilio-Signature", "")
        if signature and any(
            self.accepts(self.signed_url_for(request, base), request.signed_fields, signature)
            for base in self.public_urls
        ):
            return None
        return SignatureRefused(self.diagnose(request, signature))

    def diagnose(self, request: Request, signature: str) -> str:
        """Say which URL variant would have matched and which setting to change (at most once a second)."""
        if not signature:
            return "no X-Twilio-Signature header: the request did not come from Twilio"
        now = time.monotonic()
        if now - self.diagnosed_at < DIAGNOSIS_INTERVAL:
            return "signature does not match (not diagnosed: at most one diagnosis per second)"
        self.diagnosed_at = now
        checked = self.signed_url_for(request, self.public_urls[0])
        parts = urlsplit(checked)
        proto, host = (
            _first(request.headers.get("X-Forwarded-Proto")),
            _first(request.headers.get("X-Forwarded-Host")),
        )
        port = _first(request.headers.get("X-Forwarded-Port"))
        variants = [(_with_base(checked, scheme="https" if parts.scheme == "http" else "http"), "scheme")]
        if port.isdigit():
            variants.append((_with_base(checked, netloc=f"{parts.hostname}:{port}"), "port"))
        if proto or host:
            variants.append((_with_base(checked, proto or None, host or None), "forwarded"))
            variants.append((_with_base(checked, "https", host or None), "forwarded"))
        if self.public_urls[0]:
            variants.append((self.signed_url_for(request, ""), "request"))
        for url, kind in variants:
            if url != checked and self.accepts(url, request.signed_fields, signature):
                return (
                    f"signature matches {_without_query(url)} but {_without_query(checked)} was checked: "
                    f"{ADVICE[kind]}; request refused"
                )
        return (
            f"signature does not match {_without_query(checked)} under any known variant (wrong auth token?)"
        )
