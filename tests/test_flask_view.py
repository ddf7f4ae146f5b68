"""/sms is an ordinary Flask view: routing, hooks, signals, testing mode and the session all see it."""

import subprocess
import sys
from urllib.parse import urlencode

import pytest
from flask import got_request_exception, request, request_started, session, url_for
from helpers import ALICE, BOB, REPO, SERVICE, TOKEN, WEBHOOK_URL, echoed
from werkzeug.middleware.proxy_fix import ProxyFix

from devtools.simulator import sign


@pytest.mark.server
def test_flask_routes_lists_the_webhook():
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "responder", "routes"],
        cwd=REPO,
        env={"RESPONDER_ENV": "development", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("webhook.sms")]
    assert line.split()[1:] == ["GET,", "POST", "/sms"]


def test_url_for_builds_the_webhook_url(app):
    with app.test_request_context(base_url="https://sms.example.com"):
        assert url_for("webhook.sms", _external=True) == WEBHOOK_URL


def test_app_hooks_and_signals_run_for_a_webhook(app, twilio):
    seen = []
    app.before_request(lambda: seen.append(("before", request.endpoint)))

    @app.after_request
    def after(response):
        seen.append(("after", response.status_code))
        return response

    app.teardown_request(lambda exc: seen.append(("teardown", exc)))

    def started(sender, **extra):
        seen.append(("started", None))

    with request_started.connected_to(started, app):
        assert twilio.send("hello", ALICE, SERVICE).text == echoed(1, "hello")
    assert seen == [("started", None), ("before", "webhook.sms"), ("after", 200), ("teardown", None)]


def test_in_testing_mode_an_exception_in_the_view_reaches_the_test(app, twilio, monkeypatch):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr("responder.take_turn", broken)
    app.testing = True
    with pytest.raises(RuntimeError, match="boom"):
        twilio.send("hello", ALICE, SERVICE)


def test_got_request_exception_sees_a_failing_webhook(app, twilio, monkeypatch):
    monkeypatch.setattr("responder.take_turn", lambda *a: 1 / 0)
    caught = []

    def record(sender, exception, **extra):
        caught.append(type(exception))

    with got_request_exception.connected_to(record, app):
        assert twilio.send("hello", ALICE, SERVICE).status == 500
    assert caught == [ZeroDivisionError]


def test_wsgi_app_is_flasks_own_or_proxyfix_around_it(make_app):
    app = make_app()
    assert app.wsgi_app.__func__ is type(app).wsgi_app
    proxied = make_app(TRUSTED_PROXIES="1")
    assert isinstance(proxied.wsgi_app, ProxyFix)
    assert proxied.wsgi_app.app.__func__ is type(proxied).wsgi_app


def signed(data, url=WEBHOOK_URL):
    return {"X-Twilio-Signature": sign(TOKEN, url, data)}


def webhook(client, body, sender=ALICE, to=SERVICE, sid="SM" + "1" * 32):
    data = {"From": sender, "To": to, "Body": body, "MessageSid": sid}
    return client.post("/sms", base_url="https://sms.example.com", data=data, headers=signed(data))


def signed_get(path, sender=ALICE, to=SERVICE):
    """Return session_transaction's arguments for a GET webhook, signed as Twilio would sign it."""
    query = urlencode({"From": sender, "To": to})
    url = f"https://sms.example.com{path}?{query}"
    return {"base_url": "https://sms.example.com", "query_string": query, "headers": signed({}, url)}


def test_session_transaction_shows_the_conversation_of_a_signed_webhook(app):
    client = app.test_client()
    webhook(client, "hello", sid="SM" + "1" * 32)
    webhook(client, "again", sid="SM" + "2" * 32)
    with client.session_transaction("/sms", **signed_get("/sms")) as state:
        assert (state["n"], state["s"]) == (2, {"turns": 2})
        assert state.fresh_reason == ""
        state["n"] = 41  # a test can set up a conversation the same way
    answer = webhook(client, "and again", sid="SM" + "3" * 32)
    assert echoed(42, "and again", turns=3) in answer.get_data(as_text=True)


def test_an_unsigned_request_opens_no_conversation(app):
    client = app.test_client()
    webhook(client, "hello")
    query = {"From": ALICE, "To": SERVICE}
    with client.session_transaction("/sms", base_url="https://sms.example.com", query_string=query) as state:
        assert dict(state) == {} and state.pair == ""


def test_the_session_opens_empty_on_another_pair(app):
    client = app.test_client()
    webhook(client, "hello")
    with client.session_transaction("/sms", **signed_get("/sms", BOB, SERVICE)) as state:
        assert dict(state) == {} and state.fresh_reason == "other_pair"
    with client.session_transaction("/sms", **signed_get("/sms", ALICE, "+15005550198")) as state:
        assert dict(state) == {} and state.fresh_reason == "other_pair"  # bound to To as well as From


def test_a_view_of_the_app_reads_the_session_of_a_signed_webhook_like_any_other(app, twilio):
    @app.get("/debug-count")
    def debug_count():
        return {"count": session.get("n", 0)}

    twilio.send("hello", ALICE, SERVICE)
    cookie = twilio.cookie_header(ALICE, SERVICE)
    arguments = signed_get("/debug-count")
    arguments["headers"]["Cookie"] = cookie
    assert app.test_client(use_cookies=False).get("/debug-count", **arguments).get_json() == {"count": 1}


@pytest.mark.parametrize(
    "data",
    [{"To": SERVICE, "Body": "hi"}, {"From": ALICE, "To": SERVICE, "Body": "x" * 70_000}],
    ids=["missing From", "too large"],
)
def test_a_refused_request_sets_no_cookie(app, data):
    client = app.test_client()
    webhook(client, "hello")
    answer = client.post("/sms", base_url="https://sms.example.com", data=data, headers=signed(data))
    assert answer.status_code in (400, 413)
    assert "Set-Cookie" not in answer.headers


def test_a_forged_request_sets_no_cookie_and_keeps_the_conversation(app, twilio):
    twilio.send("hello", ALICE, SERVICE)
    cookie = twilio.cookie_header(ALICE, SERVICE)
    answer = app.test_client().post(
        "/sms",
        data={"From": ALICE, "To": SERVICE},
        headers={"X-Twilio-Signature": "forged", "Cookie": cookie},
    )
    assert answer.status_code == 403 and "Set-Cookie" not in answer.headers
    assert twilio.send("again", ALICE, SERVICE).text == echoed(2, "again")


def test_every_answer_varies_on_the_cookie_and_deletion_keeps_the_attributes(twilio):
    reply = twilio.send("hello", ALICE, SERVICE)
    assert reply.headers["vary"] == "Cookie"
    (kept,) = reply.set_cookies
    assert {"Secure", "HttpOnly", "Path=/", "SameSite=Lax", "Max-Age=14400"} <= {
        a.strip() for a in kept.split(";")
    }
    deleted = twilio.send("STOP", ALICE, SERVICE)
    (gone,) = deleted.set_cookies
    assert {"Secure", "HttpOnly", "Path=/", "SameSite=Lax", "Max-Age=0"} <= {
        a.strip() for a in gone.split(";")
    }


def test_flasks_cookie_settings_apply_to_the_webhook(app, twilio):
    app.config.update(SESSION_COOKIE_PATH="/sms", SESSION_COOKIE_SAMESITE="Strict")
    (cookie,) = twilio.send("hello", ALICE, SERVICE).set_cookies
    assert "Path=/sms" in cookie and "SameSite=Strict" in cookie


def test_max_content_length_is_flasks_setting(app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    data = {"From": ALICE, "To": SERVICE, "Body": "x" * 1200}
    answer = app.test_client().post(
        "/sms", base_url="https://sms.example.com", data=data, headers=signed(data)
    )
    assert answer.status_code == 413 and "over 1,000 bytes" in answer.get_data(as_text=True)


def test_behind_a_tls_proxy_the_cookie_is_secure_without_public_url(make_app, make_phone):
    app = make_app(TRUSTED_PROXIES="1")
    client = app.test_client()
    data = {"From": ALICE, "To": SERVICE, "Body": "hi"}
    headers = {**signed(data), "X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.example.com"}
    answer = client.post("/sms", base_url="http://127.0.0.1:8000", data=data, headers=headers)
    assert answer.status_code == 200
    assert "Secure" in answer.headers["Set-Cookie"]


def test_there_is_no_static_route_to_redirect_from(app):
    answer = app.test_client().get("/static//x", headers={"Host": "evil.example"})
    assert answer.status_code == 404 and "Location" not in answer.headers
