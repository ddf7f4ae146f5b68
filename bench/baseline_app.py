"""The baseline: the plain tutorial approach to SMS conversations with cookies.

Twilio's "track SMS conversations with cookies" tutorial, as people copy it: Flask's session counts the
messages in `session["counter"]`, a small dict names the callers, and MessagingResponse builds the reply.
No signature check, no configuration checks, no logs. Served by gunicorn with its default (sync) workers.
"""

import os

from flask import Flask, request, session
from twilio.twiml.messaging_response import MessagingResponse

app = Flask(__name__)
app.secret_key = os.environ["SECRET_KEY"]

callers = {
    "+15005550000": "Curious George",
    "+15005550001": "Boots",
    "+15005550002": "Virgil",
}


@app.route("/sms", methods=["GET", "POST"])
def hello():
    """Respond with the number of messages sent between the two parties."""
    counter = session.get("counter", 0) + 1
    session["counter"] = counter

    name = callers.get(request.values.get("From"), "Friend")
    resp = MessagingResponse()
    resp.message(f"Hello {name}, this is message #{counter}.")
    return str(resp)


@app.get("/healthz")
def healthz():
    return "ok"
