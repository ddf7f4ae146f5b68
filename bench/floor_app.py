"""The floor: the cheapest webhook there is, a bare WSGI app answering every request with fixed TwiML.

Served by the shipped server (granian, the checked-in configuration) it shows what the server alone costs.
"""

REPLY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Response><Message>Thanks, we got your message.</Message></Response>"
)
HEADERS = [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(REPLY)))]


def app(environ, start_response):
    """Read the request body (a webhook must), then answer the fixed reply."""
    length = environ.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length):
        environ["wsgi.input"].read(int(length))
    start_response("200 OK", HEADERS)
    return [REPLY]
