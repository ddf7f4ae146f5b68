"""X-Twilio-Signature checks, directly and behind a proxy, and the hints a refusal logs."""

import time
from urllib.parse import urlencode

import pytest
from helpers import ALICE, SECONDARY_TOKEN, SERVICE, TOKEN, echoed

from devtools.simulator import sign
from signatures import DIAGNOSIS_INTERVAL

PUBLIC = "https://sms.example.com/sms"
PARAMS = {"From": ALICE, "To": SERVICE, "Body": "hi", "MessageSid": "SM" + "a" * 32}


def deliver(
    app, *, signed_url=PUBLIC, reached=PUBLIC, token=TOKEN, headers=None, method="POST", signature=None
):
    """Send PARAMS signed for `signed_url` (as Twilio was configured) to the URL the app actually sees."""
    headers = dict(headers or {})
    if method == "GET":
        signed_url += "?" + urlencode(PARAMS)
        reached += "?" + urlencode(PARAMS)
        params = {}
    else:
        params = PARAMS
    if signature is None:
        signature = sign(token, signed_url, params)
    if signature:
        headers["X-Twilio-Signature"] = signature
    scheme, rest = reached.split("://", 1)
    host, path = rest.split("/", 1)
    client = app.test_client()
    return client.open("/" + path, base_url=f"{scheme}://{host}", method=method, headers=headers,
                       data=PARAMS if method == "POST" else None)  # fmt: skip


@pytest.fixture
def own_url_app(make_app):
    """Build a development app that checks signatures against the request's own URL (no PUBLIC_URL)."""

    def make(**overrides):
        return make_app(RESPONDER_ENV="development", PUBLIC_URL="", **overrides)

    return make


def test_a_correct_signature_is_accepted(app):
    assert deliver(app).status_code == 200


def test_the_secondary_token_is_accepted_during_rotation(make_app):
    app = make_app(TWILIO_AUTH_TOKEN_SECONDARY=SECONDARY_TOKEN)
    assert deliver(app, token=SECONDARY_TOKEN).status_code == 200
    assert deliver(app, token=TOKEN).status_code == 200


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("wrong token", {"token": "ffffffffffffffffffffffffffffffff"}),
        ("missing", {"signature": ""}),
        ("garbage", {"signature": "not-base64!!"}),
        ("other url", {"signed_url": "https://evil.example.net/sms"}),
    ],
)
def test_a_bad_signature_is_a_403(app, webhook_log, case, kwargs):
    answer = deliver(app, **kwargs)
    assert answer.status_code == 403
    assert answer.mimetype == "text/plain"
    assert webhook_log()[-1]["outcome"] == "refused:signature"


def test_tampered_parameters_are_refused(app):
    signature = sign(TOKEN, PUBLIC, PARAMS)
    answer = app.test_client().post(
        "/sms", base_url="https://sms.example.com", data={**PARAMS, "Body": "changed"},
        headers={"X-Twilio-Signature": signature},
    )  # fmt: skip
    assert answer.status_code == 403


def test_get_with_a_query_string_is_checked_against_the_full_url(app):
    assert deliver(app, method="GET").status_code == 200
    assert deliver(app, method="GET", signed_url="https://sms.example.com/other").status_code == 403


@pytest.mark.parametrize(
    ("signed_url", "reached"),
    [
        ("https://sms.example.com:443/sms", "https://sms.example.com/sms"),
        ("https://sms.example.com/sms", "https://sms.example.com:443/sms"),
        ("http://sms.example.com:8080/sms", "http://sms.example.com:8080/sms"),
        ("https://sms.example.com/sms", "https://sms.example.com:8443/sms"),  # RequestValidator drops ports
    ],
)
def test_default_port_variants_are_accepted(own_url_app, signed_url, reached):
    assert deliver(own_url_app(), signed_url=signed_url, reached=reached).status_code == 200


FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "sms.example.com",
    "X-Forwarded-For": "203.0.113.9",
}
INTERNAL = "http://127.0.0.1:8000/sms"


def test_behind_one_proxy_hop_trusted_proxies_rebuilds_the_public_url(own_url_app):
    app = own_url_app(TRUSTED_PROXIES="1")
    assert deliver(app, reached=INTERNAL, headers=FORWARDED).status_code == 200


def test_behind_a_proxy_public_url_alone_is_enough(make_app):
    app = make_app(PUBLIC_URL="https://sms.example.com")
    assert deliver(app, reached=INTERNAL).status_code == 200
    assert deliver(app, reached=INTERNAL, method="GET").status_code == 200


def test_forwarded_headers_are_not_trusted_by_default_and_the_log_says_what_to_set(own_url_app, webhook_log):
    answer = deliver(own_url_app(), reached=INTERNAL, headers=FORWARDED)
    assert answer.status_code == 403
    why = webhook_log()[-1]["why"]
    assert "https://sms.example.com/sms" in why and "TRUSTED_PROXIES" in why and "refused" in why


def test_forwarded_headers_from_beyond_the_trusted_hops_are_ignored(own_url_app):
    app = own_url_app(TRUSTED_PROXIES="1")
    spoofed = {"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": "sms.example.com, 127.0.0.1:8000"}
    # One trusted hop means only the last value counts; Twilio signed the URL the client claimed.
    assert deliver(app, reached=INTERNAL, headers=spoofed).status_code == 403


@pytest.mark.parametrize(
    ("signed_url", "reached", "headers", "hint"),
    [
        ("https://sms.example.com/sms", "http://sms.example.com/sms", {}, "PUBLIC_URL"),
        ("https://sms.example.com:8443/sms", "https://sms.example.com/sms", {"X-Forwarded-Port": "8443"},
         "port included"),
    ],
)  # fmt: skip
def test_a_refusal_names_the_variant_that_would_have_matched(
    own_url_app, webhook_log, signed_url, reached, headers, hint
):
    assert deliver(own_url_app(), signed_url=signed_url, reached=reached, headers=headers).status_code == 403
    why = webhook_log()[-1]["why"]
    assert f"matches {signed_url}" in why and hint in why


def test_a_wrong_public_url_is_pointed_out(make_app, webhook_log):
    app = make_app(PUBLIC_URL="https://old.example.com")
    assert deliver(app).status_code == 403
    assert "PUBLIC_URL does not match" in webhook_log()[-1]["why"]


def test_a_refusal_log_holds_no_numbers_even_for_get(app, caplog, webhook_log):
    deliver(app, method="GET", token="ffffffffffffffffffffffffffffffff")
    assert ALICE[1:] not in caplog.text and "hi" not in webhook_log()[-1]["why"].split("/")[-1]


def test_development_without_a_token_does_not_check(make_app):
    app = make_app(RESPONDER_ENV="development", TWILIO_AUTH_TOKEN="")
    assert deliver(app, signature="").status_code == 200


@pytest.mark.parametrize("proxies", ["0", "1"])
@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Port": "99999"},
        {"X-Forwarded-Host": "["},
        {"X-Forwarded-Host": "a:b:c"},
        {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.example.com:notaport"},
    ],
)
def test_unparseable_forwarded_headers_are_a_403_not_a_crash(own_url_app, proxies, headers):
    app = own_url_app(TRUSTED_PROXIES=proxies)
    answer = deliver(app, reached=INTERNAL, headers=headers, signature="x")
    assert answer.status_code == 403


@pytest.mark.parametrize(
    ("signed_url", "headers"),
    [
        ("https://sms.example.com/other-app/sms", {**FORWARDED, "X-Forwarded-Prefix": "/other-app"}),
        ("https://sms.example.com:8443/sms", {**FORWARDED, "X-Forwarded-Port": "8443"}),
    ],
)
def test_a_client_cannot_move_the_checked_url_with_port_or_prefix_headers(own_url_app, signed_url, headers):
    """A request Twilio signed for another URL of the same account is not replayable here."""
    app = own_url_app(TRUSTED_PROXIES="1")
    assert deliver(app, signed_url=signed_url, reached=INTERNAL, headers=headers).status_code == 403
    assert deliver(app, reached=INTERNAL, headers=headers).status_code == 200


def test_production_checks_only_public_url_whatever_host_the_request_names(app):
    """A request Twilio signed for another webhook of the same account is refused, Host header or not."""
    other = "https://other-app.example.net/sms"
    answer = deliver(app, signed_url=other, reached=other)
    assert answer.status_code == 403


@pytest.mark.parametrize("public_url", ["https://sms.example.com/twilio", "https://sms.example.com/twilio/"])
def test_a_public_url_with_a_path_is_the_base_of_the_signed_url(make_app, public_url):
    app = make_app(PUBLIC_URL=public_url)
    assert deliver(app, signed_url="https://sms.example.com/twilio/sms").status_code == 200
    assert deliver(app).status_code == 403


def test_each_of_several_public_urls_is_accepted(make_app):
    app = make_app(PUBLIC_URL="https://sms.example.com,https://texts.example.org")
    assert deliver(app).status_code == 200
    assert deliver(app, signed_url="https://texts.example.org/sms").status_code == 200
    assert deliver(app, signed_url="https://elsewhere.example.org/sms").status_code == 403


@pytest.mark.parametrize(
    ("public_url", "status"),
    [("https://sms.example.com/hooks", 200), ("https://sms.example.com", 403)],
    ids=["PUBLIC_URL with the mount point", "PUBLIC_URL without it"],
)
def test_an_app_mounted_under_a_prefix_checks_public_url_plus_its_own_path(make_app, public_url, status):
    """PUBLIC_URL is the URL Twilio calls minus /sms, the mount point included: never added twice."""
    app = make_app(PUBLIC_URL=public_url)
    signature = sign(TOKEN, "https://sms.example.com/hooks/sms", PARAMS)
    answer = app.test_client().post(
        "/hooks/sms",
        base_url="https://sms.example.com",
        data=PARAMS,
        headers={"X-Twilio-Signature": signature},
        environ_overrides={"SCRIPT_NAME": "/hooks", "PATH_INFO": "/sms"},
    )
    assert answer.status_code == status


def test_the_signature_is_checked_before_the_cookie_so_a_forged_webhook_never_costs_a_cookie_hmac(
    app, twilio, make_phone, monkeypatch
):
    twilio.send("hello", ALICE, SERVICE)  # the pair's jar now holds a valid cookie
    serializer = type(app.session_interface.get_signing_serializer(app))
    verified = []

    def counting_loads(self, *args, **kwargs):
        verified.append(args[0])
        return real_loads(self, *args, **kwargs)

    real_loads = serializer.loads
    monkeypatch.setattr(serializer, "loads", counting_loads)
    forger = make_phone(app, token="f" * 32)
    forger.jars = twilio.jars  # the forger replays the pair's valid cookie
    assert forger.send("again", ALICE, SERVICE).status == 403
    assert verified == []
    assert twilio.send("again", ALICE, SERVICE).text == echoed(2, "again")
    assert len(verified) == 1


def forged_request(app, headers=None, signed_for="https://elsewhere.example/sms"):
    data = {"From": ALICE, "To": SERVICE, "Body": "hi"}
    headers = {"X-Twilio-Signature": sign(TOKEN, signed_for, data), **(headers or {})}
    return app.test_client().post("/sms", base_url="https://sms.example.com", data=data, headers=headers)


def test_the_diagnosis_runs_at_most_once_a_second_and_says_so(app, webhook_log, monkeypatch):
    now = [time.monotonic()]
    monkeypatch.setattr("signatures.time.monotonic", lambda: now[0])
    forged_request(app)
    assert webhook_log()[-1]["why"] == (
        "signature does not match https://sms.example.com/sms under any known variant (wrong auth token?)"
    )
    now[0] += DIAGNOSIS_INTERVAL - 0.01
    forged_request(app)
    assert (
        webhook_log()[-1]["why"]
        == "signature does not match (not diagnosed: at most one diagnosis per second)"
    )
    now[0] += 0.01
    forged_request(app)
    assert "under any known variant" in webhook_log()[-1]["why"]


def test_a_missing_signature_is_named_as_such(app, webhook_log):
    app.test_client().post("/sms", data={"From": ALICE, "To": SERVICE})
    assert webhook_log()[-1]["why"] == "no X-Twilio-Signature header: the request did not come from Twilio"


@pytest.mark.parametrize(
    ("headers", "signed_for"),
    [
        ({"X-Forwarded-Host": "sms.example.net"}, "https://sms.example.net/sms"),  # host alone
        ({"X-Forwarded-Proto": "http"}, "http://sms.example.com/sms"),  # scheme alone
        ({"X-Forwarded-Host": "a.example, b.example"}, "https://a.example/sms"),  # the first of a list
    ],
)
def test_each_forwarded_header_alone_is_diagnosed(make_app, webhook_log, headers, signed_for):
    app = make_app(RESPONDER_ENV="development", PUBLIC_URL="")
    forged_request(app, headers, signed_for)
    why = webhook_log()[-1]["why"]
    assert why.startswith(f"signature matches {signed_for} but https://sms.example.com/sms was checked")


def test_a_get_diagnosis_hides_the_query(make_app, webhook_log):
    app = make_app(RESPONDER_ENV="development", PUBLIC_URL="")
    query = "From=%2B15005550101&To=%2B15005550199&Body=secret"
    signature = sign(TOKEN, "http://sms.example.com/sms?" + query, {})
    app.test_client().get(
        f"/sms?{query}", base_url="https://sms.example.com", headers={"X-Twilio-Signature": signature}
    )
    assert webhook_log()[-1]["why"] == (
        "signature matches http://sms.example.com/sms?… but https://sms.example.com/sms?… was checked: set "
        "PUBLIC_URL to the exact base URL in the Twilio Console, or TRUSTED_PROXIES to the number of proxies "
        "that set X-Forwarded-Proto; request refused"
    )


def test_behind_a_trusted_proxy_the_client_address_is_the_forwarded_one(make_app):
    from flask import request

    app = make_app(TRUSTED_PROXIES="1")
    seen = []
    app.before_request(lambda: seen.append(request.remote_addr))
    app.test_client().get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    assert seen == ["203.0.113.9"]


@pytest.mark.parametrize(
    ("reached", "headers", "signed_for", "advice"),
    [
        ("https://sms.example.com", {}, "http://sms.example.com/sms", "scheme"),
        ("http://sms.example.com", {}, "https://sms.example.com/sms", "scheme"),
        ("https://sms.example.com", {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "sms.example.net"},
         "http://sms.example.net/sms", "forwarded"),
        ("http://127.0.0.1:8000", {"X-Forwarded-Host": "sms.example.net"}, "https://sms.example.net/sms",
         "forwarded"),
    ],
    ids=["http signed, https reached", "https signed, http reached", "both headers", "host, TLS in front"],
)  # fmt: skip
def test_the_diagnosis_names_the_matching_url_and_the_setting_to_change(
    own_url_app, webhook_log, reached, headers, signed_for, advice
):
    from signatures import ADVICE

    data = {"From": ALICE, "To": SERVICE, "Body": "hi"}
    headers = {"X-Twilio-Signature": sign(TOKEN, signed_for, data), **headers}
    answer = own_url_app().test_client().post("/sms", base_url=reached, data=data, headers=headers)
    assert answer.status_code == 403
    assert webhook_log()[-1]["why"] == (
        f"signature matches {signed_for} but {reached}/sms was checked: {ADVICE[advice]}; request refused"
    )


def test_behind_two_trusted_proxies_the_client_address_and_scheme_are_the_outer_ones(make_app):
    """Read the second-to-last X-Forwarded-For and -Proto values, as two proxies in a row append them."""
    from flask import request

    app = make_app(TRUSTED_PROXIES="2")
    seen = []
    app.before_request(lambda: seen.append((request.remote_addr, request.scheme)))
    headers = {
        "X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.0.0.2",
        "X-Forwarded-Proto": "http, https, http",
    }
    app.test_client().get("/healthz", headers=headers)
    assert seen == [("203.0.113.9", "https")]
