"""The survey, as a texter goes through it: name, ZIP code, summary; re-asks, a give-up, a lazy timeout."""

import pytest

from conversations import survey

pytestmark = pytest.mark.conversation("conversations.survey:step")


def test_a_texter_gives_a_name_and_a_zip_code_and_gets_a_summary(twilio):
    assert twilio.send("hi").text == survey.ASK_NAME
    assert twilio.send("Ada").text == "Thanks, Ada! What is your ZIP code?"
    assert (
        twilio.send("94103").text
        == "All done, Ada: ZIP 94103. Thank you! Text anything to start a new survey."
    )
    assert twilio.state() is None  # the survey ended: the cookie is gone
    assert twilio.send("again?").text == survey.ASK_NAME


def test_a_wrong_zip_code_is_asked_again_twice_then_the_survey_gives_up(twilio):
    twilio.send("hi")
    twilio.send("Grace")
    assert twilio.send("SW1A 1AA").text == survey.ASK_ZIP_AGAIN
    assert twilio.send("9410").text == survey.ASK_ZIP_AGAIN
    assert twilio.state() == {"ask": "zip", "name": "Grace", "reasks": 2}
    assert twilio.send("nope").text == survey.GIVE_UP
    assert twilio.state() is None


def test_a_name_must_be_short_and_not_empty(twilio):
    twilio.send("hi")
    assert twilio.send("x" * 41).text == survey.ASK_NAME_AGAIN
    assert twilio.send("  Ada   Lovelace ").text == "Thanks, Ada Lovelace! What is your ZIP code?"


def test_after_ten_idle_minutes_the_pending_question_is_asked_again(twilio, clock):
    twilio.send("hi")
    twilio.send("Ada")
    clock.advance(10 * 60)
    assert twilio.send("12345").text.startswith("All done")  # ten minutes exactly: still an answer
    twilio.send("hi")
    twilio.send("Bo")
    clock.advance(10 * 60 + 1)
    assert twilio.send("12345").text == "Still there? Thanks, Bo! What is your ZIP code?"
    assert (
        twilio.send("12345").text
        == "All done, Bo: ZIP 12345. Thank you! Text anything to start a new survey."
    )


def test_reset_and_stop_belong_to_the_service(twilio):
    twilio.send("hi")
    twilio.send("Ada")
    assert twilio.send("RESET").text.startswith("Your conversation has been reset")
    assert twilio.send("hello").text == survey.ASK_NAME
    twilio.send("STOP")
    assert twilio.state() is None


def test_the_survey_keeps_its_contract(conversation_contract):
    for seed in range(3):
        assert conversation_contract(seed=seed) is None
