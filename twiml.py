"""TwiML replies: what MessagingResponse renders, built once and filled in per reply."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from flask import Response
from twilio.twiml.messaging_response import MessagingResponse

TWIML_MIMETYPE = "text/xml; charset=utf-8"
# Characters XML 1.0 does not allow anywhere, escaped or not: Twilio could not parse a reply holding one.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# pragma: no mutate start (this runs at import, before mutmut can switch a mutant in)
def message_envelope() -> tuple[bytes, bytes]:
    """Render a MessagingResponse with one <Message> once, split around where its text goes."""
    mark = "\x00"  # never inside the envelope itself
    response = MessagingResponse()
    response.message(mark)
    head, tail = response.to_xml().encode().split(mark.encode())
    return head, tail


# pragma: no mutate end


EMPTY = MessagingResponse().to_xml().encode()
MESSAGE_HEAD, MESSAGE_TAIL = message_envelope()


def xml_text(text: str) -> str:
    """Remove the characters XML 1.0 forbids."""
    return NOT_XML.sub("", text)


def twiml_for(reply: str) -> bytes:
    """Render a reply (or nothing) as TwiML, escaped exactly as MessagingResponse escapes it."""
    reply = xml_text(reply)
    if not reply:
        return EMPTY
    return MESSAGE_HEAD + escape(reply).encode() + MESSAGE_TAIL  # no surrogates left: always encodable


def twiml_response(reply: str) -> Response:
    """Answer Twilio with the reply as TwiML."""
    return Response(twiml_for(reply), content_type=TWIML_MIMETYPE)
