"""The terminal phone: scripts in-process and over real HTTP, and the interactive chat in a pty (the probe conversation)."""

import os
import sys
from pathlib import Path

import pexpect
import pytest
from click.testing import CliRunner
from helpers import PROBE, REPO, SECRET, TOKEN, probe_env, running_server, served_settings

from devtools.chat import chat_command, cookie_count
from devtools.servers import free_port


@pytest.fixture
def development(monkeypatch):
    monkeypatch.setenv("RESPONDER_ENV", "development")
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("CONVERSATION", PROBE)


def chat(*args):
    return CliRunner().invoke(chat_command, list(args))


def test_a_mismatch_fails_with_expected_and_actual(development, tmp_path):
    script = tmp_path / "wrong.chat"
    script.write_text("> hello\n< #1 Friend: hello\n> again\n< #7\n> never sent\n")
    result = chat("--script", str(script))
    assert result.exit_code == 1
    assert "< #1 Friend: hello (turns=1)" in result.output
    assert "wrong.chat:4: expected reply containing '#7'" in result.output
    assert "actual reply was '#2 Friend: again (turns=2)'" in result.output
    assert "never sent" not in result.output


def test_an_empty_expectation_means_no_reply(development, tmp_path):
    script = tmp_path / "silent.chat"
    script.write_text("> hello\n<\n")
    assert chat("--script", str(script)).exit_code == 1
    script.write_text("> STOP\n<\n")
    assert chat("--script", str(script)).exit_code == 0


def test_an_unknown_line_is_reported_with_its_line_number(development, tmp_path):
    script = tmp_path / "typo.chat"
    script.write_text("> hello\n? what\n")
    result = chat("--script", str(script))
    assert result.exit_code == 1 and "typo.chat:2: unknown line kind '?'" in result.output


@pytest.fixture(scope="module")
def production_server(tmp_path_factory):
    with running_server(
        "serve", served_settings(1), tmp_path_factory.mktemp("server") / "server.log"
    ) as server:
        yield f"http://127.0.0.1:{server.port}/sms"


@pytest.mark.server
def test_a_wrong_token_is_reported_as_the_servers_403(production_server, tmp_path):
    script = tmp_path / "hello.chat"
    script.write_text("> hello\n")
    result = chat("--script", str(script), "--url", production_server, "--token", "f" * 32)
    assert result.exit_code == 1 and "the webhook answered HTTP 403" in result.output


@pytest.mark.server
def test_an_unreachable_server_is_reported_clearly(tmp_path):
    script = tmp_path / "hello.chat"
    script.write_text("> hello\n")
    result = chat("--script", str(script), "--url", f"http://127.0.0.1:{free_port()}/sms")
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:" in result.output and "make run" in result.output


def test_the_count_is_read_from_the_cookie():
    assert cookie_count("conversation=eyJuIjo0Mn0.x.y") == 42
    assert cookie_count("conversation=garbage") is None
    assert cookie_count("conversation=.eJzzSM3JyQcABJgB8Q.x.y") is None  # compressed, but not JSON
    assert cookie_count("conversation=.bm90IHpsaWI.x.y") is None  # not even zlib


@pytest.mark.server
def test_the_interactive_phone_in_a_terminal(tmp_path):
    env = {**os.environ, "RESPONDER_ENV": "development", "SECRET_KEY": SECRET, "TERM": "dumb", **probe_env()}
    flask = str(Path(sys.executable).parent / "flask")
    phone = pexpect.spawn(
        flask, ["--app", "responder", "chat"], cwd=str(REPO), env=env, encoding="utf-8", timeout=20
    )
    try:
        phone.expect_exact("you> ")
        for text, expected in [
            ("hello", "#1 Friend: hello"),
            ("how are you", "#2 Friend: how are you"),
            ("still there", "#3 Friend: still there"),
        ]:
            phone.sendline(text)
            phone.expect_exact(expected)
            phone.expect_exact("you> ")
        phone.sendline("/wait 5h")
        phone.expect_exact("the clock moves on 5h")
        phone.sendline("back again")
        phone.expect_exact("#1 Friend: back again")
        phone.expect_exact("count 1")
        phone.expect_exact("you> ")
        phone.send("STP\x1b[DO\r")  # a typo fixed with the left arrow: line editing
        phone.expect_exact("[Twilio]> You have successfully been unsubscribed")
        phone.expect_exact("opted out")
        phone.expect_exact("you> ")
        phone.sendline("hi again")
        phone.expect_exact("(blocked by Twilio, error 21610: not delivered) #1 Friend: hi again")
        phone.expect_exact("you> ")
        phone.send("\x1b[A\x1b[A\x1b[B\r")  # history: up twice, down once brings back "hi again"
        phone.expect_exact("(blocked by Twilio, error 21610")
        phone.expect_exact("you> ")
        phone.sendline("START")
        phone.expect_exact("[Twilio]> You have successfully been re-subscribed")
        phone.expect_exact("you> ")
        phone.sendline("hi")
        phone.expect_exact("+15005550199> #1 Friend: hi (turns=1)")
        phone.sendline("/quit")
        phone.expect(pexpect.EOF)
    finally:
        phone.close()
    assert phone.exitstatus == 0


@pytest.mark.server
def test_with_url_nothing_of_the_in_process_app_is_printed(development, production_server, tmp_path, caplog):
    script = tmp_path / "hello.chat"
    script.write_text("> hello\n< #1 Friend: hello\n")
    result = chat("--script", str(script), "--url", production_server, "--token", TOKEN)
    assert result.exit_code == 0, result.output
    assert "TWILIO_AUTH_TOKEN" not in result.output + caplog.text and "signatures" not in result.output


def test_the_in_process_phone_signs_for_public_url_when_it_is_set(development, monkeypatch, tmp_path):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("PUBLIC_URL", "https://sms.example.com")
    script = tmp_path / "hello.chat"
    script.write_text("> hello\n< #1 Friend: hello\n")
    result = chat("--script", str(script))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def server_behind_a_public_url(tmp_path_factory):
    env = {
        **served_settings(1),
        "PUBLIC_URL": "https://sms.example.com",
    }  # behind a proxy or tunnel
    with running_server("serve", env, tmp_path_factory.mktemp("proxied") / "server.log") as server:
        yield f"http://127.0.0.1:{server.port}/sms"


@pytest.mark.server
def test_a_403_from_a_server_with_public_url_says_to_sign_for_it(server_behind_a_public_url, tmp_path):
    script = tmp_path / "hello.chat"
    script.write_text("> hello\n")
    result = chat("--script", str(script), "--url", server_behind_a_public_url, "--token", TOKEN)
    assert result.exit_code == 1 and "the webhook answered HTTP 403" in result.output
    assert "checks signatures against its PUBLIC_URL: pass --sign-for PUBLIC_URL/sms" in result.output


@pytest.mark.server
def test_sign_for_reaches_a_server_that_checks_signatures_for_its_public_url(
    server_behind_a_public_url, tmp_path
):
    script = tmp_path / "hello.chat"
    script.write_text("> hello\n< #1 Friend: hello\n> again\n< #2 Friend: again\n")
    result = chat(
        "--script", str(script), "--url", server_behind_a_public_url, "--token", TOKEN,
        "--sign-for", "https://sms.example.com/sms",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    wrong = chat(
        "--script", str(script), "--url", server_behind_a_public_url, "--token", TOKEN,
        "--sign-for", "https://sms.example.com/other",
    )  # fmt: skip
    assert wrong.exit_code == 1 and "check that --sign-for is the server's PUBLIC_URL + /sms" in wrong.output
