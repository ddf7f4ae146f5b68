"""The pure conversation rules: state + message -> reply + new state."""

import pytest

from conversation import (
    RESET_REPLY,
    Conversation,
    Inbound,
    Texts,
    keyword_of,
    step,
    template_errors,
)

TEXTS = Texts()


def say(body="hello", conversation=None, texts=TEXTS, **fields):
    return step(conversation or Conversation(), Inbound(body=body, **fields), texts)


def test_first_message_gets_the_greeting_and_the_next_the_count():
    first = say("hi", name="Ada", sid_fingerprint="a")
    assert first.reply == "Hi Ada, welcome! Text RESET any time to start over."
    assert first.conversation == Conversation(count=1, last_sid_fingerprint="a")
    second = say("again", first.conversation, name="Ada", sid_fingerprint="b")
    assert second.reply == "Hi Ada, this is message #2 in our conversation."
    assert second.conversation.count == 2


@pytest.mark.parametrize(
    ("body", "group"),
    [
        *[
            (w, "STOP")
            for w in ["STOP", "stopall", "Unsubscribe", "CANCEL", "end", "QUIT", "revoke", "OPTOUT"]
        ],
        *[(w, "START") for w in ["START", "yes", "Unstop"]],
        ("HELP", "HELP"),
        ("info", "HELP"),
        ("  reset \n", "RESET"),
        ("stop texting me", ""),
        ("help me", ""),
        ("STOP!", ""),
        ("", ""),
    ],
)
def test_keywords_match_the_whole_body_case_insensitively(body, group):
    assert keyword_of(Inbound(body=body)) == group


@pytest.mark.parametrize(
    ("opt_out_type", "body", "group"),
    [
        ("STOP", "please no more", "STOP"),
        ("START", "hello", "START"),
        ("HELP", "STOP", "HELP"),
        ("", "STOP", "STOP"),
    ],
)
def test_opt_out_type_wins_over_the_body(opt_out_type, body, group):
    assert keyword_of(Inbound(body=body, opt_out_type=opt_out_type)) == group


@pytest.mark.parametrize("body", ["STOP", "quit", "START", "unstop"])
def test_opt_out_and_opt_in_delete_the_conversation_with_no_reply(body):
    result = say(body, Conversation(count=5, last_sid_fingerprint="x"))
    assert result.reply == ""
    assert result.conversation is None


def test_help_is_not_counted_and_silent_unless_configured():
    state = Conversation(count=3, last_sid_fingerprint="x")
    silent = say("HELP", state)
    assert silent.reply == "" and silent.conversation == state and silent.outcome == "keyword:help"
    configured = say("info", state, Texts(help="Reply STOP to opt out."))
    assert configured.reply == "Reply STOP to opt out."
    assert configured.conversation == state


def test_reset_deletes_and_confirms():
    result = say("RESET", Conversation(count=9))
    assert result.conversation is None
    assert result.reply == RESET_REPLY


def test_a_retry_is_answered_again_without_counting():
    state = say("one", sid_fingerprint="m1").conversation
    second = say("two", state, sid_fingerprint="m2")
    retried = say("two", second.conversation, sid_fingerprint="m2")
    assert retried.reply == second.reply
    assert retried.conversation.count == 2
    assert retried.outcome == "duplicate"


def test_messages_without_a_sid_are_never_taken_for_retries():
    state = say("one").conversation
    assert say("two", state).conversation.count == 2


@pytest.mark.parametrize(
    ("num_media", "note"), [(1, "We got your 1 attachment."), (3, "We got your 3 attachments.")]
)
def test_media_counts_and_is_acknowledged(num_media, note):
    result = say("", Conversation(count=1), num_media=num_media)
    assert result.conversation.count == 2
    assert result.reply.endswith(note)


def test_a_reply_over_twilios_limit_is_trimmed_to_1600_characters_with_an_ellipsis():
    result = say("hi", name="N" * 3000)
    assert result.reply == "Hi " + "N" * 1596 + "…"
    assert len(result.reply) == 1600
    exact = say("hi", Conversation(count=1), Texts(count_reply="x" * 1600))
    assert exact.reply == "x" * 1600  # at the limit: untouched


@pytest.mark.parametrize(
    "body", ["\u017ftop", "\u017fTOP", "\u017ftopall", "\uff33\uff34\uff2f\uff30", "S\u0307TOP"]
)
def test_look_alikes_of_keywords_are_ordinary_messages(body):
    result = say(body, Conversation(count=1))
    assert result.outcome == "reply" and result.conversation.count == 2


def test_placeholders_fill_name_count_and_to():
    texts = Texts(count_reply="{name} #{count} via {to}")
    assert (
        say("x", Conversation(count=1), texts, name="Bo", to="+15005550199").reply == "Bo #2 via +15005550199"
    )


@pytest.mark.parametrize(
    ("template", "is_ok"),
    [("Hi {name}", True), ("{count}{to}", True), ("{{literal}}", True), ("{nme}", False), ("{name.__class__}", False),
     ("{0}", False), ("unclosed {", False), ("{count:s}", False), ("{name:d}", False), ("{name!x}", False),
     ("{count:{name}}", False), ("{count:{zzz}}", False), ("   ", False), ("{count:>4}", False), ("{count:>99999999999}", False)],
)  # fmt: skip
def test_templates_are_checked(template, is_ok):
    assert (template_errors(template) == []) is is_ok


def test_a_reply_cut_at_a_space_drops_the_space_before_the_ellipsis():
    result = step(Conversation(count=1), Inbound(body="hi"), Texts(count_reply="a" * 1598 + " " + "b" * 10))
    assert result.reply == "a" * 1598 + "…"
