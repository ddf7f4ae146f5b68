"""The README's quick start is true: `make run`'s server answers its curl example as shown."""

import re
import shutil
import subprocess

import pytest
from live_server import REPO, running_server

pytestmark = pytest.mark.server

README = (REPO / "README.md").read_text(encoding="utf-8")


def quick_start_block() -> str:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)[1]


def test_the_quick_start_is_two_commands():
    commands = [
        line.split("#")[0].strip() for line in re.findall(r"```sh\n(.*?)```", README, re.S)[0].splitlines()
    ]
    assert commands == ["make run", "make test"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_example_gets_the_greeting_then_the_count(tmp_path):
    block = quick_start_block()
    commands = re.findall(r"(curl .*?)\n# (.*?)\n", block.replace("\\\n", ""), re.S)
    assert len(commands) == 2
    with running_server("run", {}, tmp_path / "server.log") as server:  # no settings at all, as make run
        for command, expected in commands:
            command = command.replace("127.0.0.1:5000", f"127.0.0.1:{server.port}")
            answer = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=20
            )
            assert answer.stdout.strip() == expected.strip()


def test_every_make_command_the_readme_names_exists_and_make_alone_installs_nothing():
    named = set(re.findall(r"`make ([a-z]+)\b", README))
    listed = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0
    targets = {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert named <= targets, named - targets
    dry = subprocess.run(["make", "-n"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert "pip" not in dry.stdout and "venv" not in dry.stdout


def test_the_readme_script_commands_run_as_written():
    section = README.split("### Conversation scripts", 1)[1]
    first = re.findall(r"```sh\n(.*?)\n", section, re.S)[0]
    assert first.startswith(".venv/bin/flask --app responder chat --script examples/")
    command = first.replace(".venv/bin/", str(REPO / ".venv" / "bin") + "/", 1)
    result = subprocess.run(
        ["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "RESPONDER_ENV": "development"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
