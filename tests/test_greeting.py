"""The built-in conversation's own wording: a greeting for message 1, the count after it.

Only this file (and the docs that quote it) pins the built-in texts: the service's other tests run
against tests/probe_conversation.py.
"""

import pytest
from click.testing import CliRunner
from helpers import REPO, TOKEN, running_server, served_settings

from devtools.chat import chat_command
from greeting import DEFAULT_COUNT_REPLY, DEFAULT_GREETING, template_errors


@pytest.fixture
def builtin(make_app, make_phone):
    def make(**overrides):
        return make_phone(make_app(CONVERSATION="", **overrides))

    return make


def test_the_default_texts():
    assert DEFAULT_GREETING == "Hi {name}, welcome! Text RESET any time to start over."
    assert DEFAULT_COUNT_REPLY == "Hi {name}, this is message #{count} in our conversation."


def test_message_one_is_greeted_and_the_next_ones_counted(builtin):
    phone = builtin()
    assert phone.send("hi", "+15005550101", "+15005550199").text == (
        "Hi Friend, welcome! Text RESET any time to start over."
    )
    assert phone.send("again", "+15005550101", "+15005550199").text == (
        "Hi Friend, this is message #2 in our conversation."
    )


def test_a_retry_after_the_answer_gets_the_same_count_reply(builtin):
    phone = builtin()
    phone.send("hi", "+15005550101", "+15005550199")
    second = phone.send("again", "+15005550101", "+15005550199")
    assert phone.retry(second, "again", "+15005550101", "+15005550199").text == second.text


@pytest.mark.parametrize(
    ("files", "note"), [(1, "We got your 1 attachment."), (3, "We got your 3 attachments.")]
)
def test_media_is_acknowledged(builtin, files, note):
    reply = builtin().send(
        "", "+15005550101", "+15005550199", media=[f"https://m.example/{i}" for i in range(files)]
    )
    assert reply.text == f"Hi Friend, welcome! Text RESET any time to start over. {note}"


def test_placeholders_fill_name_count_and_to(builtin):
    phone = builtin(COUNT_REPLY_TEMPLATE="{name} #{count} via {to}")
    phone.send("x", "+15005550101", "+15005550199")
    assert phone.send("x", "+15005550101", "+15005550199").text == "Friend #2 via +15005550199"


def test_a_reply_that_media_pushes_over_twilios_limit_is_trimmed_with_an_ellipsis(builtin):
    phone = builtin(COUNT_REPLY_TEMPLATE="a" * 1585 + "{count}")  # the longest template allowed
    phone.send("x", "+15005550101", "+15005550199")
    reply = phone.send("x", "+15005550101", "+15005550199", media=["https://m.example/1"]).text
    assert reply == "a" * 1585 + "2 We got your…"


@pytest.mark.parametrize(
    ("template", "is_ok"),
    [("Hi {name}", True), ("{count}{to}", True), ("{{literal}}", True), ("{nme}", False), ("{name.__class__}", False),
     ("{0}", False), ("unclosed {", False), ("{count:s}", False), ("{name:d}", False), ("{name!x}", False),
     ("{count:{name}}", False), ("{count:{zzz}}", False), ("   ", False), ("{count:>4}", False), ("{count:>99999999999}", False)],
)  # fmt: skip
def test_templates_are_checked(template, is_ok):
    assert (template_errors(template) == []) is is_ok


def test_the_cookie_holds_no_name_and_no_text(builtin):
    from devtools.simulator import cookie_payload

    phone = builtin()
    phone.send("my secret words", "+15005550101", "+15005550199")
    payload = cookie_payload(phone.cookie_header("+15005550101", "+15005550199").split("=", 1)[1])
    assert payload["s"] == {} and "secret" not in str(payload) and "5550101" not in str(payload)


@pytest.mark.server
@pytest.mark.parametrize("script", sorted((REPO / "examples").glob("*.chat")), ids=lambda p: p.name)
def test_the_built_in_scripts_pass_against_a_real_server(script, tmp_path):
    with running_server("serve", served_settings(1, CONVERSATION=""), tmp_path / "server.log") as server:
        result = CliRunner().invoke(
            chat_command,
            ["--script", str(script), "--url", f"http://127.0.0.1:{server.port}/sms", "--token", TOKEN],
        )
    assert result.exit_code == 0, result.output
