"""The Flask floor: the cheapest Flask webhook there is, one route answering every message with fixed TwiML.

It reads the body and sets a cookie as the service does, but keeps no state, checks nothing and logs
nothing. Served by the shipped server (gunicorn -c gunicorn.conf.py, the same workers) it shows
what Flask on that server costs before the service does any work of its own.
"""

from flask import Flask, Response, request

REPLY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Response><Message>Thanks, we got your message.</Message></Response>"
)
COOKIE = "conversation=fixed; Max-Age=14400; HttpOnly; SameSite=Lax; Path=/"

app = Flask(__name__)


@app.route("/sms", methods=["GET", "POST"])
def sms():
    """Read the request body (a webhook must), then answer the fixed reply with a fixed cookie."""
    request.get_data()
    return Response(REPLY, content_type="text/xml; charset=utf-8", headers={"Set-Cookie": COOKIE})


@app.get("/healthz")
def healthz():
    return "ok"
