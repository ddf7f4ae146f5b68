"""The webhook's request: Flask's Request, reading Twilio's form once, cheaply and within bounds."""

from __future__ import annotations

import codecs
from functools import cached_property
from urllib.parse import quote, unquote_plus

from flask import Request, abort
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.http import parse_cookie

FORM_MIMETYPE = "application/x-www-form-urlencoded"
# Decoding costs about 0.1 us per %XX: a 64 KiB body of escapes would cost ten valid webhooks. Twilio's
# largest (a 1,600-character body of 4-byte characters) carries 6,400.
MAX_ESCAPES = 8192


def keep_escaped(error: UnicodeDecodeError) -> tuple[str, int]:
    """Leave percent-escapes that are no UTF-8 escaped, as Werkzeug's form parser does."""
    return quote(error.object[error.start : error.end], safe=""), error.end


codecs.register_error("responder.keep-escaped", keep_escaped)


class WebhookFields(dict):
    """A webhook's fields: name -> every value sent, as Twilio signs them (RequestValidator reads `getall`)."""

    def getall(self, name: str) -> list[str]:
        return self[name]

    def first(self, name: str, default: str = "") -> str:
        """Return the first value sent for `name`, or `default`."""
        values = self.get(name)
        return values[0] if values else default


def parse_fields(text: str) -> WebhookFields:
    """Split form-encoded text into fields, as parse_qsl does, decoding bad escapes as Werkzeug's parser does."""
    # parse_qsl itself, minus its per-field overhead: most of Twilio's fields need no decoding at all. It
    # measured 21 us against Werkzeug's request.form at 50 us, about 5% of a webhook: it stays.
    fields = WebhookFields()
    for piece in text.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if "%" in piece or "+" in piece:
            name = unquote_plus(name, errors="responder.keep-escaped")
            value = unquote_plus(value, errors="responder.keep-escaped")
        fields.setdefault(name, []).append(value)
    return fields


class WebhookRequest(Request):
    """Flask's request with Twilio's webhook fields read from the query (GET) or the form body (POST)."""

    @cached_property
    def webhook_fields(self) -> WebhookFields:
        """Return the webhook's fields, or abort with the 4xx that says why they cannot be read."""
        if self.method != "POST":  # a GET's fields are in its query, and signed as part of its URL
            return parse_fields(self.query_string.decode("utf-8", "replace"))
        if self.mimetype != FORM_MIMETYPE:
            abort(415, f"send the webhook as {FORM_MIMETYPE} (Twilio's default)")
        length, limit = self.content_length, self.max_content_length
        if length is None:  # chunked: servers treat such bodies differently
            abort(411, "send the webhook with a Content-Length header, as Twilio does")
        if limit is not None and length > limit:
            abort(413, f"the webhook's body is over {limit:,} bytes")
        body = self.get_data()  # kept: the session reads the fields before the view
        if self.max_form_parts is not None and body.count(b"&") >= self.max_form_parts:
            abort(413, f"the webhook has more than {self.max_form_parts} fields; Twilio sends a few dozen")
        if body.count(b"%") > MAX_ESCAPES:
            abort(413, f"the webhook has more than {MAX_ESCAPES} percent-escapes; Twilio's carry fewer")
        try:
            return parse_fields(body.decode())
        except UnicodeDecodeError:
            abort(400, "the form is not UTF-8 text")

    @cached_property
    def cookies(self):
        """Return the request's cookies, also when the server joined repeated Cookie headers with ','."""
        # gunicorn joins a repeated header's values with ','; a cookie's value holds no ',' (RFC 6265).
        joined = ";".join(self.headers.getlist("Cookie")).replace(",", ";")
        return parse_cookie(joined, cls=self.dict_storage_class)

    @cached_property
    def signed_fields(self) -> WebhookFields:
        """Return the fields X-Twilio-Signature covers besides the URL (a GET has none)."""
        return self.webhook_fields if self.method == "POST" else WebhookFields()

    @cached_property
    def number_pair(self) -> tuple[str, str] | None:
        """Return the message's (From, To), or None when either is missing or the fields are unreadable."""
        try:
            fields = self.webhook_fields
        except HTTPException:  # the view refuses such a request; the session just opens empty
            return None
        sender, recipient = fields.first("From").strip(), fields.first("To").strip()
        return (sender, recipient) if sender and recipient else None
