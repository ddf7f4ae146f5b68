"""Whatever arrives at the webhook: never a 5xx, and every 200 is well-formed TwiML."""

import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl

from helpers import ALICE, SERVICE, TOKEN, scaled_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.twiml.messaging_response import MessagingResponse

from devtools.simulator import sign
from twiml import twiml_for
from webhook_request import parse_fields

text = st.text(st.characters(codec="utf-8"), max_size=80)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
field_names = (
    st.sampled_from(["From", "To", "Body", "NumMedia", "MessageSid", "OptOutType", "MediaUrl0"]) | text
)
forms = st.dictionaries(field_names, text | st.sampled_from(["STOP", "RESET", "HELP", "-1", "99999999999999999"]),
                        max_size=8)  # fmt: skip
cookies = st.one_of(header_text, st.builds(lambda s: "conversation=" + s, header_text))
header_names = st.sampled_from(
    [
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "X-Forwarded-Port",
        "X-Forwarded-Prefix",
        "X-Forwarded-For",
        "Host",
    ]
) | header_text.filter(str.isidentifier)
signatures = st.sampled_from(["valid", "wrong", "missing"])


def assert_sane(answer, method="POST"):
    assert answer.status_code < 500
    if answer.status_code == 200 and method != "HEAD":
        root = ET.fromstring(answer.get_data())
        assert root.tag == "Response"
        for message in root.iter("Message"):
            assert 0 < len(message.text or "") <= 1600  # Twilio's limit for one message body


@settings(
    max_examples=scaled_examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    form=forms,
    cookie=cookies,
    extra=st.dictionaries(header_names, header_text, max_size=3),
    signature=signatures,
    proxies=st.sampled_from(["0", "1"]),
)
def test_arbitrary_forms_headers_signatures_and_cookies_never_break_the_webhook(
    make_app, form, cookie, extra, signature, proxies
):
    app = make_app(TRUSTED_PROXIES=proxies)
    form = {"From": ALICE, "To": SERVICE, **form}
    headers = {**extra, "Cookie": cookie}
    if signature != "missing":
        key = TOKEN if signature == "valid" else "f" * 32
        headers["X-Twilio-Signature"] = sign(key, "https://sms.example.com/sms", form)
    answer = app.test_client().post("/sms", base_url="https://sms.example.com", data=form, headers=headers)
    assert_sane(answer)
    if signature != "valid":
        # A Host (or trusted forwarded Host) that is no host name at all is refused by Flask's routing.
        host_given = "Host" in extra or (proxies == "1" and "X-Forwarded-Host" in extra)
        bad_host = host_given and answer.status_code == 400
        assert answer.status_code == 403 or bad_host


@settings(
    max_examples=scaled_examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "HEAD"]),
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "text/plain", "", "multipart/form-data"]
    ),
    body=st.binary(max_size=200),
    query=header_text | st.builds("From=%2B15005550101&To=%2B15005550199&Body={}".format, header_text),
    cookie=cookies,
)
def test_arbitrary_raw_requests_never_get_a_5xx(make_app, method, content_type, body, query, cookie):
    app = make_app(RESPONDER_ENV="development", TWILIO_AUTH_TOKEN="")
    headers = {"Cookie": cookie, **({"Content-Type": content_type} if content_type else {})}
    answer = app.test_client().open(f"/sms?{query}", method=method, data=body, headers=headers)
    assert_sane(answer, method)


@settings(max_examples=scaled_examples(500), deadline=None)
@given(reply=st.text(max_size=200) | st.text(st.characters(max_codepoint=0x1F), max_size=5))
def test_twiml_is_exactly_what_messaging_response_builds(reply):
    built = MessagingResponse()
    allowed = "".join(c for c in reply if c in "\t\n\r" or (ord(c) >= 0x20 and not 0xD800 <= ord(c) <= 0xDFFF
                      and c not in "\ufffe\uffff"))  # fmt: skip
    if allowed:
        built.message(allowed)
    assert twiml_for(reply) == built.to_xml().encode("utf-8", "xmlcharrefreplace")
    ET.fromstring(twiml_for(reply))  # well-formed XML 1.0, whatever the reply held


@settings(
    max_examples=scaled_examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    template=st.lists(
        st.sampled_from(["{to}", "{name}", "{count}", "Hi ", "\x0b", "é", "<&>"]), min_size=1, max_size=6
    ),
    to=st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
)
def test_replies_are_well_formed_xml_whatever_the_template_and_fields(make_app, template, to):
    app = make_app(
        GREETING_TEMPLATE="".join(template) + "!",
        RESPONDER_ENV="development",
        TWILIO_AUTH_TOKEN="",
        CONVERSATION="",
    )
    answer = app.test_client().post("/sms", data={"From": ALICE, "To": to, "Body": "hi"})
    if to.strip():
        assert answer.status_code == 200
        root = ET.fromstring(answer.get_data())  # raises on any character XML 1.0 forbids
        assert next(m.text for m in root.iter("Message")).endswith("!")


@settings(max_examples=scaled_examples(500))
@given(text=st.text(alphabet="ab=&+%2C3é;", max_size=40) | st.text(max_size=40))
def test_the_form_parser_reads_any_body_exactly_as_parse_qsl(text):
    expected: dict[str, list[str]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote"):
        expected.setdefault(name, []).append(value)
    assert parse_fields(text) == expected
