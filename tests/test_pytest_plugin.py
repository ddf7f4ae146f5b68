"""The pytest plugin as a user meets it: fixtures in their own test files, scripts, and its refusals."""

import subprocess
import sys
import textwrap

import pytest
from helpers import REPO, TOKEN, phone_at

pytestmark = pytest.mark.server

USER_TEST = """
def test_a_phone_and_a_clock(twilio, clock):
    first = twilio.send("hi")
    assert first.status == 200 and first.cookie_size > 0 and first.segments == 1
    assert "<Response><Message>" in first.twiml
    clock.advance(60)
    assert twilio.send("idle?").text == "idle=60.0"
    assert twilio.state() == {"turns": 1}
"""


def pytest_run(tmp_path, *args: str, files: dict[str, str]) -> subprocess.CompletedProcess:
    """Run pytest from the project's folder, as a user does, on test files of a user kept outside it."""
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "tests")}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_a_users_tests_get_the_simulated_twilio_and_the_clock_of_the_conversation_named(tmp_path):
    result = pytest_run(
        tmp_path,
        str(tmp_path / "test_mine.py"),
        "--conversation",
        "probe_conversation:echo",
        files={"test_mine.py": USER_TEST},
    )
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr


def test_the_ini_option_names_the_conversation_and_a_marker_wins_over_it(tmp_path):
    files = {
        "pytest.ini": "[pytest]\nconversation = probe_conversation:echo\n",
        "test_ini.py": USER_TEST,
        "test_marker.py": """
            import pytest
            pytestmark = pytest.mark.conversation("conversations.menu:step")
            def test_the_menu(twilio):
                assert twilio.send("hi").text.startswith("Harbour Salon:")
        """,
    }
    result = pytest_run(tmp_path, "-c", str(tmp_path / "pytest.ini"), str(tmp_path), files=files)
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout + result.stderr


def test_an_unknown_conversation_stops_the_run_at_once_in_one_line(tmp_path):
    result = pytest_run(
        tmp_path,
        str(tmp_path / "test_mine.py"),
        "--conversation",
        "nowhere:step",
        files={"test_mine.py": USER_TEST},
    )
    assert result.returncode == 4 and "passed" not in result.stdout
    assert result.stderr.strip().splitlines() == [
        "ERROR: --conversation nowhere:step: no module named 'nowhere'; put the module in the project's "
        "conversations/ folder, an installed package or PYTHONPATH"
    ]


def test_a_malformed_script_line_fails_that_script_naming_file_and_line(tmp_path):
    files = {"good.chat": "> hi\n< #1 Friend: hi\n", "typo.chat": "> hi\n? what\n> never\n"}
    result = pytest_run(
        tmp_path,
        str(tmp_path / "good.chat"),
        str(tmp_path / "typo.chat"),
        "--conversation",
        "probe_conversation:echo",
        files=files,
    )
    assert result.returncode == 1 and "1 failed, 1 passed" in result.stdout
    assert f"{tmp_path / 'typo.chat'}:2: unknown line kind '?'" in result.stdout
    assert (
        "    > hi\n    < #1 Friend: hi (turns=1)\n" in result.stdout
        and "never" not in result.stdout.split("typo.chat:2")[1]
    )


def test_over_http_a_refused_signature_fails_with_the_servers_own_refusal(production_server, tmp_path):
    server = production_server()
    assert phone_at(server.port).send("hi").status == 200  # the server answers Twilio
    url = f"http://127.0.0.1:{server.port}/sms"
    files = {"test_mine.py": "def test_hi(twilio):\n    twilio.send('hi')\n", "hi.chat": "> hi\n"}
    for token, passed in (("f" * 32, False), (TOKEN, True)):
        result = pytest_run(
            tmp_path, str(tmp_path), "--twilio-url", url, "--twilio-token", token, files=files
        )
        if passed:
            assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout
        else:
            assert result.returncode == 1 and "2 failed" in result.stdout
            assert "403 Forbidden: invalid or missing X-Twilio-Signature" in result.stdout
