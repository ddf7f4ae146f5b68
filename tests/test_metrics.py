"""/metrics: Prometheus text, exact counts by outcome and fresh reason, no numbers, bodies or names."""

import pytest
from conftest import ALICE, BOB, SERVICE, plant_cookie, rewrite
from prometheus_client.parser import text_string_to_metric_families

from metrics import outcome_label


def samples(app) -> dict[tuple[str, tuple], float]:
    """Scrape /metrics; return {(sample name, sorted labels): value}."""
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    text = answer.get_data(as_text=True)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def count(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_webhooks_are_counted_by_outcome_and_fresh_reason(app, twilio, clock):
    for body in ["hello", "two", "HELP", "RESET", "again", "STOP"]:
        twilio.send(body, ALICE, SERVICE)
    plant_cookie(twilio, BOB, SERVICE, "garbage", clock)
    twilio.send("hi", BOB, SERVICE)
    app.test_client().post(
        "/sms", data={"From": ALICE, "To": SERVICE}, headers={"X-Twilio-Signature": "forged"}
    )
    app.test_client().put("/sms")

    found = samples(app)
    expected = {"reply": 4, "keyword_help": 1, "keyword_reset": 1, "keyword_stop": 1, "refused_signature": 1,
                "refused_method": 1}  # fmt: skip
    for outcome, n in expected.items():
        assert count(found, "responder_webhooks_total", outcome=outcome) == n, outcome
    assert count(found, "responder_conversations_fresh_total", reason="new") == 2  # Alice, then after RESET
    assert count(found, "responder_conversations_fresh_total", reason="garbage") == 1
    assert count(found, "responder_webhook_duration_seconds_count") == 9
    assert count(found, "responder_caller_directory_entries") == 0
    assert any(name.startswith("process_") for name, _ in found)


def test_no_number_body_or_name_reaches_a_label(make_app, make_phone, tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada Lovelace\n")
    app = make_app(CALLERS_FILE=str(directory))
    make_phone(app).send("my secret diary", ALICE, SERVICE)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for leaked in ["Ada", "diary", ALICE, ALICE[-7:], SERVICE[-7:]]:
        assert leaked not in text
    assert count(samples(app), "responder_caller_directory_entries") == 1


def test_a_failed_directory_reload_is_counted(make_app, clock, tmp_path):

    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n")
    app = make_app(CALLERS_FILE=str(directory))
    rewrite(directory, "number,name\nnot-a-number,Ada\n", clock)
    clock.advance(10)
    assert app.test_client().get("/readyz").status_code == 503
    found = samples(app)
    assert count(found, "responder_caller_directory_reload_failures_total") == 1
    assert count(found, "responder_caller_directory_entries") == 1  # the previous directory is kept


@pytest.mark.parametrize(
    ("outcome", "label"),
    [("reply", "reply"), ("keyword:stop", "keyword_stop"), ("refused:signature", "refused_signature"),
     ("refused:400", "refused_bad_request"), ("refused:413", "refused_too_large"), ("error:500", "error")],
)  # fmt: skip
def test_log_outcomes_become_labels(outcome, label):
    assert outcome_label(outcome) == label
