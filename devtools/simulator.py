"""A Twilio-faithful phone: builds, signs and delivers inbound-message webhooks, with Twilio's cookie jar."""

from __future__ import annotations

import base64
import http.client
import json
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlencode, urlsplit

from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
DEFAULT_FROM = "+15005550100"  # the texter, when a test or the terminal phone names none
DEFAULT_TO = "+15005550199"  # the service's number
# Twilio keeps a pair's cookies for at most 4 hours, whatever Max-Age says:
# https://www.twilio.com/docs/messaging/guides/track-sms-conversations
TWILIO_COOKIE_CAP_SECONDS = 4 * 60 * 60

# Twilio's default opt-out management on long codes, as its support article "Twilio support for opt-out
# keywords (SMS STOP filtering)" describes it (support.twilio.com/hc/en-us/articles/223134027): single-word
# keywords, any case; the message still reaches the webhook; while a pair is opted out nothing is
# delivered to the phone (a reply fails with error 21610) until an opt-in keyword; Twilio's own replies:
TWILIO_OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
TWILIO_OPT_IN = frozenset({"START", "YES", "UNSTOP"})
TWILIO_HELP = frozenset({"HELP", "INFO"})
TWILIO_STOP_REPLY = (
    "You have successfully been unsubscribed. You will not receive any more messages from this number. "
    "Reply START to resubscribe."
)
TWILIO_START_REPLY = (
    "You have successfully been re-subscribed to messages from this number. Reply HELP for help. "
    "Reply STOP to unsubscribe. Msg&Data Rates May Apply."
)
TWILIO_HELP_REPLY = "Reply STOP to unsubscribe. Msg&Data Rates May Apply."
OPTED_OUT_ERROR = 21610  # "Attempt to send to unsubscribed recipient"


@dataclass(frozen=True)
class OptOutTexts:
    """Twilio's replies to opt-out, opt-in and help keywords; a Messaging Service's Advanced Opt-Out sets its own."""

    stop: str = TWILIO_STOP_REPLY
    start: str = TWILIO_START_REPLY
    help: str = TWILIO_HELP_REPLY


def opt_out_type(body: str) -> str:
    """Return the keyword group Twilio sees in a body: STOP, START, HELP or ''."""
    word = body.strip().upper()
    if word in TWILIO_OPT_OUT:
        return "STOP"
    if word in TWILIO_OPT_IN:
        return "START"
    return "HELP" if word in TWILIO_HELP else ""


GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = "^{}\\[~]|€\f"


def segment_count(text: str) -> int:
    """Count the SMS segments a body needs: GSM-7 160/153 per segment, else UCS-2 70/67."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text):
        units, single, multi = sum(2 if c in GSM7_EXTENDED else 1 for c in text), 160, 153
    else:
        units, single, multi = len(text.encode("utf-16-le")) // 2, 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


def parse_duration(text: str) -> float:
    """Parse '90s', '15m', '4h', '4h30m', '1d' or plain seconds into seconds."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text)
    if not text or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 15m, 4h or 4h30m")
    return sum(float(n) * units[u or "s"] for n, u in parts)


def sign(token: str, url: str, params: dict) -> str:
    """Return the X-Twilio-Signature Twilio sends for `params` posted to `url` (GET: params={})."""
    return RequestValidator(token).compute_signature(url, params)


def cookie_payload(value: str) -> dict:
    """Decode an itsdangerous-signed cookie's payload without checking its signature (ValueError if not one)."""
    is_compressed = value.startswith(".")
    data = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    try:
        return json.loads(zlib.decompress(raw) if is_compressed else raw)
    except zlib.error as exc:
        raise ValueError(f"not a cookie payload ({exc})") from None


@dataclass
class StoredCookie:
    value: str
    expires_at: float


@dataclass
class Reply:
    """What the webhook answered, parsed as Twilio would read it."""

    status: int
    body: bytes
    headers: dict[str, str]
    set_cookies: list[str]
    sid: str
    twilio_replies: list[str] = field(default_factory=list)  # Twilio's own auto-replies, delivered
    is_blocked: bool = False  # the pair is opted out: the service's messages fail with error 21610
    cookie_size: int = 0  # the pair's Cookie header after this reply, as Twilio will send it next

    @property
    def twiml(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def root(self) -> ET.Element | None:
        try:
            return ET.fromstring(self.body)
        except ET.ParseError:
            return None

    @property
    def messages(self) -> list[str]:
        """The texts of the TwiML <Message> verbs, in order."""
        root = self.root
        if root is None or root.tag != "Response":
            return []
        return ["".join(m.itertext()) for m in root.iter("Message")]

    @property
    def text(self) -> str:
        return "\n".join(self.messages)

    @property
    def delivered(self) -> list[str]:
        """The service's messages that reach the phone."""
        return [] if self.is_blocked else self.messages

    @property
    def blocked(self) -> list[str]:
        """The service's messages Twilio refuses to deliver (error 21610)."""
        return self.messages if self.is_blocked else []

    @property
    def segments(self) -> int:
        return sum(segment_count(m) for m in self.messages)


class FlaskTransport:
    """Deliver webhooks to a Flask app in the same process (its test client, no cookie jar)."""

    def __init__(self, app):
        self.client = app.test_client(use_cookies=False)

    def request(self, method: str, url: str, headers: dict, body: bytes):
        parts = urlsplit(url)
        response = self.client.open(
            parts.path + (f"?{parts.query}" if parts.query else ""),
            base_url=f"{parts.scheme}://{parts.netloc}",
            method=method,
            headers=headers,
            data=body,
        )
        return response.status_code, response.headers.to_wsgi_list(), response.get_data()


class HttpTransport:
    """Deliver webhooks over real HTTP, to `target` when given, else to the URL's own host."""

    def __init__(self, target: str | None = None, timeout: float = 15.0):
        self.target = urlsplit(target) if target else None
        self.timeout = timeout  # Twilio gives up after 15 seconds

    def request(self, method: str, url: str, headers: dict, body: bytes):
        parts = self.target or urlsplit(url)
        own = urlsplit(url)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(parts.hostname, parts.port, timeout=self.timeout)
        try:
            path = own.path + (f"?{own.query}" if own.query else "")
            connection.request(method, path, body=body or None, headers={"Host": own.netloc, **headers})
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


@dataclass
class Simulator:
    """Play Twilio toward one webhook URL: parameters, signatures and one cookie jar per number pair."""

    transport: object
    url: str
    token: str = ""
    sign_for: str = ""  # the URL Twilio was given, when the webhook is reached at another (a proxy, a tunnel)
    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    method: str = "POST"
    advanced_opt_out: OptOutTexts | None = None  # a Messaging Service with Advanced Opt-Out: sends OptOutType
    opted_out: set[tuple[str, str]] = field(default_factory=set)
    jars: dict[tuple[str, str], dict[str, StoredCookie]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def params(self, body: str, sender: str, to: str, media: Iterable[str] = (), sid: str = "") -> dict:
        """Build the parameters Twilio posts for one inbound message."""
        media = list(media)
        sid = sid or ("MM" if media else "SM") + secrets.token_hex(16)
        params = {
            "ToCountry": "", "ToState": "", "SmsMessageSid": sid, "NumMedia": str(len(media)),
            "ToCity": "", "FromZip": "", "SmsSid": sid, "FromState": "", "SmsStatus": "received",
            "FromCity": "", "Body": body, "FromCountry": "", "To": to, "ToZip": "",
            "NumSegments": str(segment_count(body)), "MessageSid": sid, "AccountSid": self.account_sid,
            "From": sender, "ApiVersion": API_VERSION,
        }  # fmt: skip
        for i, url in enumerate(media):
            params[f"MediaUrl{i}"] = url
            params[f"MediaContentType{i}"] = "image/jpeg"
        return params

    def cookie_header(self, sender: str = DEFAULT_FROM, to: str = DEFAULT_TO) -> str:
        """Return the Cookie header Twilio would send for this pair now ('' for none)."""
        now = time.time()
        with self.lock:
            jar = self.jars.get((sender, to), {})
            for name in [n for n, c in jar.items() if c.expires_at <= now]:
                del jar[name]
            return "; ".join(f"{name}={c.value}" for name, c in jar.items())

    def store_cookies(self, sender: str, to: str, set_cookies: list[str]) -> None:
        """Keep what the webhook set, honouring Max-Age/Expires and Twilio's 4-hour cap."""
        now = time.time()
        with self.lock:
            jar = self.jars.setdefault((sender, to), {})
            for header in set_cookies:
                parsed = SimpleCookie()
                try:
                    parsed.load(header)
                except CookieError:
                    continue
                for name, morsel in parsed.items():
                    expires_at = now + TWILIO_COOKIE_CAP_SECONDS
                    if morsel["max-age"]:
                        expires_at = min(expires_at, now + int(morsel["max-age"]))
                    elif morsel["expires"]:
                        expires_at = min(expires_at, parsedate_to_datetime(morsel["expires"]).timestamp())
                    if expires_at <= now or not morsel.value:
                        jar.pop(name, None)
                    else:
                        jar[name] = StoredCookie(morsel.value, expires_at)

    def prepare(self, params: dict, cookie: str) -> tuple[str, dict, bytes]:
        """Return (url, headers, body) for one signed webhook request."""
        headers = {}
        url, signed_url = self.url, self.sign_for or self.url
        if self.method == "GET":
            query = urlencode(params)
            url, signed_url = (u + ("&" if urlsplit(u).query else "?") + query for u in (url, signed_url))
            body, signed_params = b"", {}
        else:
            body, signed_params = urlencode(params).encode(), params
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.token:
            headers["X-Twilio-Signature"] = sign(self.token, signed_url, signed_params)
        if cookie:
            headers["Cookie"] = cookie
        headers["User-Agent"] = "TwilioProxy/1.1"
        return url, headers, body

    def deliver(self, params: dict, cookie: str | None = None) -> Reply:
        """Deliver prepared parameters with the pair's cookie (or the one given) and keep what comes back."""
        sender, to = params["From"], params["To"]
        if cookie is None:
            cookie = self.cookie_header(sender, to)
        url, headers, body = self.prepare(params, cookie)
        status, response_headers, data = self.transport.request(self.method, url, headers, body)
        set_cookies = [v for k, v in response_headers if k.lower() == "set-cookie"]
        if status == 200:  # Twilio keeps cookies only from a successful answer
            self.store_cookies(sender, to, set_cookies)
        flat = {k.lower(): v for k, v in response_headers}
        return Reply(status, data, flat, set_cookies, params["MessageSid"])

    def send(
        self,
        body: str,
        sender: str = DEFAULT_FROM,
        to: str = DEFAULT_TO,
        media: Iterable[str] = (),
        sid: str = "",
    ) -> Reply:
        """Text `body` from `sender` to `to`: Twilio's opt-out handling, then the webhook, then delivery."""
        pair, keyword = (sender, to), opt_out_type(body)
        texts = self.advanced_opt_out or OptOutTexts()
        params = self.params(body, sender, to, media, sid)
        if keyword and self.advanced_opt_out:
            params["OptOutType"] = keyword
        own = []
        if keyword == "STOP":
            own = [] if pair in self.opted_out else [texts.stop]
            self.opted_out.add(pair)
        elif keyword == "START":
            self.opted_out.discard(pair)
            own = [texts.start]
        elif keyword == "HELP" and pair not in self.opted_out:
            own = [texts.help]
        reply = self.deliver(params)
        reply.twilio_replies, reply.is_blocked = own, pair in self.opted_out
        reply.cookie_size = self.cookie_size(sender, to)
        return reply

    def is_opted_out(self, sender: str = DEFAULT_FROM, to: str = DEFAULT_TO) -> bool:
        return (sender, to) in self.opted_out

    def state(self, sender: str = DEFAULT_FROM, to: str = DEFAULT_TO) -> dict | None:
        """Return the conversation's state the pair's cookie holds (None: no conversation), read as Twilio could."""
        header = self.cookie_header(sender, to)
        for pair in header.split("; ") if header else []:
            name, _, value = pair.partition("=")
            if name == "conversation":
                return cookie_payload(value).get("s")
        return None

    def retry(self, reply: Reply, body: str, sender: str = DEFAULT_FROM, to: str = DEFAULT_TO) -> Reply:
        """Deliver the message behind `reply` again with the same MessageSid, as Twilio's retry does."""
        again = self.deliver(self.params(body, sender, to, sid=reply.sid))
        again.is_blocked = (sender, to) in self.opted_out
        return again

    def send_together(
        self, bodies: list[str], sender: str = DEFAULT_FROM, to: str = DEFAULT_TO
    ) -> list[Reply]:
        """Deliver several messages at once, all carrying the same cookie; the last answer's cookie wins."""
        cookie = self.cookie_header(sender, to)
        batch = [self.params(b, sender, to) for b in bodies]
        replies: list[Reply | None] = [None] * len(batch)

        def run(i: int) -> None:
            replies[i] = self.deliver(batch[i], cookie=cookie)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batch))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return replies  # type: ignore[return-value]

    def cookie_size(self, sender: str = DEFAULT_FROM, to: str = DEFAULT_TO) -> int:
        return len(self.cookie_header(sender, to))


def twilio_for(app, token: str = "") -> Simulator:
    """Play Twilio toward an app in-process, signing (with its first token) for the URL it checks."""
    tokens, public_urls = app.config["TWILIO_AUTH_TOKENS"], app.config["PUBLIC_URLS"]
    url = f"{public_urls[0]}/sms" if public_urls else "http://localhost/sms"
    return Simulator(FlaskTransport(app), url, token=token or (tokens[0] if tokens else ""))
