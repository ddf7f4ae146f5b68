"""Bad requests get a clear 4xx and never a 5xx."""

import io

import pytest
from helpers import ALICE, SERVICE, TOKEN, WEBHOOK_URL

from devtools.simulator import sign


def signed_post(client, data, url=WEBHOOK_URL, **kwargs):
    signature = sign(TOKEN, url, data)
    return client.post(
        "/sms",
        base_url="https://sms.example.com",
        data=data,
        headers={"X-Twilio-Signature": signature},
        **kwargs,
    )


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        ({"To": SERVICE, "Body": "hi"}, "From"),
        ({"From": ALICE, "Body": "hi"}, "To"),
        ({"From": "", "To": SERVICE}, "From"),
        ({"From": ALICE, "To": "  "}, "To"),
        ({"Body": "hi"}, "From and To"),
    ],
)
def test_missing_numbers_are_a_400_naming_the_field(app, webhook_log, data, missing):
    answer = signed_post(app.test_client(), data)
    assert answer.status_code == 400
    assert answer.mimetype == "text/plain"
    assert f"missing {missing}" in answer.get_data(as_text=True)
    assert webhook_log()[-1] == {"outcome": "refused:400", "why": f"missing {missing}"}


def test_a_body_over_64_kib_is_a_413(app):
    answer = signed_post(app.test_client(), {"From": ALICE, "To": SERVICE, "Body": "x" * (64 * 1024 + 1)})
    assert answer.status_code == 413
    assert answer.mimetype == "text/plain"


def test_a_body_just_under_the_limit_is_answered(app):
    answer = signed_post(app.test_client(), {"From": ALICE, "To": SERVICE, "Body": "x" * 60_000})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b'{"From": "+15005550101"}'), ("text/plain", b"From=%2B15005550101"),
     ("multipart/form-data; boundary=x", b"--x--")],
)  # fmt: skip
def test_a_post_that_is_not_form_encoded_is_a_415(app, webhook_log, content_type, body):
    answer = app.test_client().post("/sms", data=body, headers={"Content-Type": content_type})
    assert answer.status_code == 415
    assert webhook_log()[-1]["outcome"] == "refused:415"
    assert "application/x-www-form-urlencoded" in answer.get_data(as_text=True)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_a_405(app, method):
    answer = app.test_client().open("/sms", method=method)
    assert answer.status_code == 405
    assert set(answer.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_errors_are_plain_text_and_show_no_secrets(app):
    answer = app.test_client().post("/sms", data={"From": ALICE, "To": SERVICE})
    text = answer.get_data(as_text=True)
    assert answer.status_code == 403 and answer.mimetype == "text/plain"
    assert TOKEN not in text and app.secret_key not in text and "<html" not in text.lower()


def test_unknown_paths_are_a_plain_404(app):
    answer = app.test_client().get("/nope")
    assert answer.status_code == 404 and answer.mimetype == "text/plain"


def test_a_post_without_content_length_is_a_411(app):
    body = io.BytesIO(b"From=%2B15005550101&To=%2B15005550199&Body=" + b"a" * 200_000)
    answer = app.test_client().post(
        "/sms",
        input_stream=body,
        content_type="application/x-www-form-urlencoded",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert answer.status_code == 411
    assert "Content-Length" in answer.get_data(as_text=True)


def test_head_is_not_a_webhook_call(app, twilio):
    answer = app.test_client().head("/sms?From=%2B15005550101&To=%2B15005550199&Body=hi")
    assert answer.status_code == 405
    assert "Set-Cookie" not in answer.headers and answer.data == b""


def test_a_body_that_is_not_utf8_is_a_400(app):
    answer = app.test_client().post(
        "/sms",
        data=b"From=%2B15005550101&To=%2B15005550199&Body=caf\xe9",
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 400 and "not UTF-8" in answer.get_data(as_text=True)


@pytest.mark.parametrize(("fields", "status"), [(256, 200), (257, 413), (5_000, 413)])
def test_more_than_256_fields_is_refused_before_the_signature_check(app, webhook_log, fields, status):
    data = {"From": ALICE, "To": SERVICE} | {f"F{i}": "" for i in range(fields - 2)}
    answer = app.test_client().post(
        "/sms", base_url="https://sms.example.com", data=data, headers={"X-Twilio-Signature": "forged"}
    )
    if status == 200:  # within the limit the request reaches the signature check, which refuses it
        assert answer.status_code == 403
    else:
        assert answer.status_code == 413 and "more than 256 fields" in answer.get_data(as_text=True)
        assert webhook_log()[-1]["outcome"] == "refused:413"


def test_a_percent_escape_that_is_not_utf8_is_kept_as_written(make_app, make_phone):
    from webhook_request import parse_fields

    assert parse_fields("Body=caf%E9&To=%2B1") == {"Body": ["caf%E9"], "To": ["+1"]}
    assert parse_fields("caf%E9=x") == {"caf%E9": ["x"]}  # in a name too
