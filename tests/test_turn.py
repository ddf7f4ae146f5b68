"""One message's turn: the service's keywords, retries and count around any conversation's step."""

import pytest
from probe_conversation import SECRET_DETAIL

from conversation import Conversation, ConversationError, fit, load
from turn import RESET_REPLY, ConversationBug, Inbound, Progress, keyword_of, take_turn

ECHO = load("probe_conversation:echo")
FORGETFUL = load("probe_conversation:forgetful")


NOW = 1_800_000_000


def say(body="hello", progress=None, conversation=ECHO, help_text="", now=NOW, **fields):
    inbound = Inbound(body=body, name="Ada", **fields)
    return take_turn(progress or Progress(), inbound, now, conversation, help_text)


def test_the_service_counts_and_the_conversation_keeps_its_state():
    first = say("hi", sid_fingerprint="a")
    assert first.reply == "#1 Ada: hi (turns=1)"
    assert first.progress == Progress(count=1, last_sid_fingerprint="a", state={"turns": 1}, last_at=NOW)
    second = say("again", first.progress, sid_fingerprint="b")
    assert second.reply == "#2 Ada: again (turns=2)"
    assert (second.count, second.outcome) == (2, "reply")


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
    assert keyword_of(body) == group


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
    assert keyword_of(body, opt_out_type) == group


@pytest.mark.parametrize("body", ["STOP", "quit", "START", "unstop"])
def test_opt_out_and_opt_in_delete_the_conversation_without_calling_it(body):
    result = say(body, Progress(5, "x", {"turns": 5}), conversation=load("probe_conversation:echo"))
    assert (result.reply, result.progress) == ("", None)


def test_help_is_not_counted_and_silent_unless_configured():
    progress = Progress(3, "x", {"turns": 3})
    silent = say("HELP", progress)
    assert (silent.reply, silent.progress, silent.outcome) == ("", progress, "keyword:help")
    configured = say("info", progress, help_text="Reply STOP to opt out.")
    assert (configured.reply, configured.progress) == ("Reply STOP to opt out.", progress)


def test_reset_deletes_and_confirms():
    result = say("RESET", Progress(9, "", {"turns": 9}))
    assert (result.reply, result.progress, result.outcome) == (RESET_REPLY, None, "keyword:reset")


def test_a_retry_after_the_answer_is_repeated_and_never_advances():
    first = say("one", sid_fingerprint="m1")
    retried = say("one", first.progress, sid_fingerprint="m1")
    assert retried.reply == first.reply
    assert (retried.progress, retried.outcome, retried.count) == (first.progress, "duplicate", 1)


def test_a_retry_after_the_answer_is_silent_when_the_conversation_cannot_repeat():
    first = say("one", conversation=FORGETFUL, sid_fingerprint="m1")
    retried = say("one", first.progress, conversation=FORGETFUL, sid_fingerprint="m1")
    assert (retried.reply, retried.progress, retried.outcome) == ("", first.progress, "duplicate")


def test_a_retry_before_the_answer_gets_the_same_reply_and_state():
    before = say("one", sid_fingerprint="m1").progress
    first, again = (say("two", before, sid_fingerprint="m2") for _ in range(2))
    assert first == again


def test_messages_without_a_sid_are_never_taken_for_retries():
    progress = say("one").progress
    assert say("two", progress).count == 2


def test_media_and_idle_time_reach_the_conversation():
    assert say("look", num_media=3).reply == "#1 Ada: look +3 (turns=1)"
    assert say("idle?", Progress(1, "", {}, last_at=NOW), now=NOW + 61.5).reply == "idle=61.5"
    assert say("idle?").reply == "idle=None"


def test_help_and_retries_leave_the_time_of_the_last_counted_message():
    first = say("one", sid_fingerprint="a")
    assert first.progress.last_at == NOW
    assert say("HELP", first.progress, now=NOW + 50).progress.last_at == NOW
    assert say("one", first.progress, now=NOW + 50, sid_fingerprint="a").progress.last_at == NOW
    assert say("idle?", first.progress, now=NOW + 100).reply == "idle=100.0"


def test_a_step_that_changes_its_state_in_place_changes_only_what_it_returns():
    def append(state, message):
        state.setdefault("seen", []).append(message.body)
        return "ok", {"seen": state["seen"][-2:]} if message.body == "trim" else state

    appending = Conversation(step=append, name="test:append", key="k")
    progress = say("a", conversation=appending).progress
    kept = progress.state
    second = say("b", progress, conversation=appending).progress
    assert kept == {"seen": ["a"]} and second.state == {"seen": ["a", "b"]}  # the first state left untouched


def test_a_plain_tuple_is_a_reply_and_an_empty_text_answers_nothing():
    assert say("tuple").reply == "a plain tuple"
    quiet = say("quiet", Progress(1, "", {"turns": 1}))
    assert (quiet.reply, quiet.progress.state) == ("", {"turns": 1})


def test_state_none_ends_the_conversation_after_its_reply():
    result = say("bye", Progress(4, "", {"turns": 4}))
    assert (result.reply, result.progress, result.count) == ("bye", None, 5)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("raise", "the step raised RuntimeError"),
        ("bloat", "state is 2,012 bytes of JSON, over the budget of 1,024"),
        ("set", "state holds a value JSON cannot carry"),
    ],
)
def test_a_faulty_step_is_a_bug_named_without_its_message_or_state(body, problem):
    with pytest.raises(ConversationBug) as caught:
        say(body)
    assert caught.value.problem.startswith(problem)
    assert SECRET_DETAIL not in caught.value.problem


def test_a_state_that_grows_is_refused_when_it_crosses_the_budget():
    progress, sizes = Progress(), []
    with pytest.raises(ConversationBug, match="over the budget of 1,024"):
        for _ in range(20):
            progress = say("grow", progress).progress
            sizes.append(len(progress.state))
    assert sizes == [1, 2, 3, 4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    ("target", "why"),
    [
        (
            "nowhere_module:step",
            "no module named 'nowhere_module'; put the module in the project's conversations/",
        ),
        ("probe_conversation:missing", "module 'probe_conversation' has no attribute 'missing'"),
        ("probe_conversation:SECRET_DETAIL", "is a str, not a callable step(state, message)"),
        ("probe_conversation", "is not module:callable"),
        ("tests_that_raise_at_import:step", "no module named"),
    ],
)
def test_a_conversation_that_cannot_run_is_refused_saying_why(target, why):
    with pytest.raises(ConversationError, match=None) as caught:
        load(target)
    assert why in str(caught.value)


def test_a_missing_dependency_of_the_module_is_not_taken_for_a_missing_module(tmp_path, monkeypatch):
    (tmp_path / "needs_more.py").write_text(
        "import not_installed_anywhere\n\ndef step(state, message): ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConversationError) as caught:
        load("needs_more:step")
    assert str(caught.value) == (
        "importing 'needs_more' raised ModuleNotFoundError: no module named 'not_installed_anywhere'"
    )


def test_two_callables_with_one_qualified_name_get_keys_of_their_own(tmp_path, monkeypatch):
    (tmp_path / "lambdas.py").write_text(
        "first = lambda state, message: ('1', {})\nsecond = lambda state, message: ('2', {})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load("lambdas:first").key != load("lambdas:second").key


def test_an_import_that_raises_is_named_by_its_exception_type(tmp_path, monkeypatch):
    (tmp_path / "broken_conversation.py").write_text(f"raise KeyError({SECRET_DETAIL!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConversationError) as caught:
        load("broken_conversation:step")
    assert str(caught.value) == "importing 'broken_conversation' raised KeyError"


def test_a_conversation_key_changes_with_its_name_and_version():
    assert len({ECHO.key, FORGETFUL.key, load("greeting:greet_and_count").key}) == 3
    assert load("probe_conversation:echo").key == ECHO.key


def test_a_reply_over_twilios_limit_is_trimmed_to_1600_characters():
    assert fit("x" * 1600) == "x" * 1600  # at the limit: untouched
    assert fit("a" * 1598 + " " + "b" * 10) == "a" * 1598 + "…"  # cut at a space: the space goes too
    assert len(say("b" * 2000).reply) == 1600
