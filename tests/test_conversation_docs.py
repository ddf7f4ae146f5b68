"""The conversation pages' code and commands work as written, in a copy of the project that has the docs' module."""

import os
import re
import shutil
import subprocess
import time

import pytest
from helpers import REPO, shell_blocks

from devtools.servers import free_port, running
from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server


def python_block(page: str, first_line: str) -> str:
    """Return the python block of a page that starts with a given comment line."""
    text = (REPO / page).read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith(first_line)]
    return block


@pytest.fixture
def project(tmp_path):
    """A copy of the project (the shared .venv linked in) holding the docs' hello conversation and its test."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    copy = tmp_path / "project"
    for name in files:
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    link_venv(copy / ".venv")
    (copy / "conversations" / "hello.py").write_text(
        python_block("docs/conversations.md", "# conversations/hello.py")
    )
    test = python_block("docs/testing-conversations.md", "# conversations/tests/test_hello.py")
    (copy / "conversations" / "tests" / "test_hello.py").write_text(test)
    return copy


def link_venv(venv):
    """Give the copy a .venv of links to the shared one, with install stamps of its own, all of one age: make
    installs nothing there (a reinstall from the copy would point the shared venv's editable install at it)."""
    (venv / "bin").mkdir(parents=True)
    now = time.time()
    for item in (REPO / ".venv" / "bin").iterdir():
        if item.name.startswith("."):
            (venv / "bin" / item.name).touch()
            os.utime(venv / "bin" / item.name, (now, now))
        else:
            (venv / "bin" / item.name).symlink_to(item)
    (venv / "lib").symlink_to(REPO / ".venv" / "lib")
    shutil.copy(REPO / ".venv" / "pyvenv.cfg", venv / "pyvenv.cfg")


def run(project, command: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    environment = {"PATH": os.environ["PATH"], "RESPONDER_ENV": "development", "HOME": str(project), **env}
    return subprocess.run(
        ["bash", "-c", command],
        cwd=project,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_hello_conversation_checks_serves_and_chats_as_the_page_says(project):
    check, serve, chat = (
        shell_blocks("docs/conversations.md", "## From nothing to a survey")[0].strip().splitlines()
    )
    checked = run(project, check)
    assert checked.returncode == 0, checked.stderr
    assert "conversation conversations.hello:step: 300 simulated messages" in checked.stdout

    port = free_port()
    command = ["bash", "-c", serve]
    env = {
        "PATH": os.environ["PATH"],
        "RESPONDER_ENV": "development",
        "PORT": str(port),
        "HOME": str(project),
    }
    with running(command, env, project, project / "server.log", port):
        phone = Simulator(HttpTransport(), f"http://127.0.0.1:{port}/sms")
        assert [phone.send(body).text for body in ("hi", "Ada", "again")] == [
            "Hi! What should I call you?",
            "Nice to meet you, Ada!",
            "Welcome back, Ada: message #3.",
        ]

    chatted = run(project, chat, stdin="hi\nAda\n/quit\n")
    assert chatted.returncode == 0, chatted.stderr
    assert "+15005550199> Nice to meet you, Ada!" in chatted.stdout


def test_the_survey_runs_in_make_chat_as_the_page_shows(project):
    (command,) = shell_blocks("docs/conversations.md", "## From nothing to a survey")[1].strip().splitlines()
    chatted = run(project, command, stdin="hi\nAda\n94103\n/quit\n")
    shown = re.findall(r"```text\n(you> hi\n.*?)```", (REPO / "docs" / "conversations.md").read_text(), re.S)[
        0
    ]
    replies = [line for line in shown.splitlines() if line.startswith("+15005550199> ")]
    assert all(reply in chatted.stdout for reply in replies) and len(replies) == 3, chatted.stdout


def test_the_testing_page_runs_its_test_and_script_as_written(project):
    test_command = shell_blocks("docs/testing-conversations.md", "## A test")[0].strip()
    passed = run(project, test_command)
    assert passed.returncode == 0 and "2 passed" in passed.stdout, passed.stdout
    script_command = shell_blocks("docs/testing-conversations.md", "## Chat scripts are tests")[0].strip()
    played = run(project, script_command)
    assert played.returncode == 0 and "1 passed" in played.stdout, played.stdout
    (project / "conversations" / "tests" / "wrong.chat").write_text(
        "# conversation: conversations.survey:step\n> hi\n< What is your name?\n> Ada\n< Thanks, Bob!\n"
    )
    failed = run(project, ".venv/bin/python -m pytest conversations/tests/wrong.chat")
    shown = re.findall(
        r"```text\n(the conversation so far:.*?)```",
        (REPO / "docs" / "testing-conversations.md").read_text(),
        re.S,
    )[0]
    assert failed.returncode == 1
    assert all(line.strip() in failed.stdout for line in shown.splitlines()), failed.stdout


def test_the_readmes_own_conversation_commands_run_as_written(project):
    chat, check = shell_blocks("README.md", "## Your own conversation")[0].strip().splitlines()
    chatted = run(project, chat.split("#")[0], stdin="hi\nAda\n/quit\n")
    assert "Thanks, Ada! What is your ZIP code?" in chatted.stdout, chatted.stdout + chatted.stderr
    checked = run(project, check.split("#")[0])
    assert checked.returncode == 0 and "no defect found" in checked.stdout, checked.stderr
