"""The README's quick start is true: `make run`'s server answers its curl example as shown; its links resolve."""

import re
import shlex
import subprocess
import tomllib

import pytest
from helpers import REPO, require, running_server, shell_blocks

pytestmark = pytest.mark.server

README = (REPO / "README.md").read_text(encoding="utf-8")


def pages() -> list:
    """Return the README, the changelog and every page of docs/ (read when a test runs, not at import)."""
    return [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]


def quick_start_block() -> str:
    return shell_blocks("README.md", "## Quick start")[1]


def test_the_quick_start_is_two_commands():
    commands = [
        line.split("#")[0].strip() for line in re.findall(r"```sh\n(.*?)```", README, re.S)[0].splitlines()
    ]
    assert commands == ["make run", "make test"]


def test_the_curl_example_gets_the_greeting_then_the_count(tmp_path):
    require("curl", "apt-get install curl")
    block = quick_start_block()
    commands = re.findall(r"(curl .*?)\n# (.*?)\n", block.replace("\\\n", ""), re.S)
    assert len(commands) == 2
    with running_server(
        "run", {"CONVERSATION": ""}, tmp_path / "server.log"
    ) as server:  # no settings, as make run
        for command, expected in commands:
            command = command.replace("127.0.0.1:5000", f"127.0.0.1:{server.port}")
            answer = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=20
            )
            assert answer.stdout.strip() == expected.strip()


def test_every_make_command_the_readme_and_docs_name_exists_and_make_alone_installs_nothing():
    named = set(
        re.findall(r"`make ([a-z]+)\b", "\n".join(page.read_text(encoding="utf-8") for page in pages()))
    )
    listed = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0
    targets = {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert named <= targets, named - targets
    dry = subprocess.run(["make", "-n"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert "pip" not in dry.stdout and "venv" not in dry.stdout


def test_the_chat_page_script_commands_run_as_written():
    chat = (REPO / "docs" / "chat.md").read_text(encoding="utf-8")
    section = chat.split("## Conversation scripts", 1)[1]
    first = re.findall(r"```sh\n(.*?)\n", section, re.S)[0]
    assert first.startswith(".venv/bin/flask --app responder chat --script examples/")
    command = first.replace(".venv/bin/", str(REPO / ".venv" / "bin") + "/", 1)
    result = subprocess.run(
        ["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "RESPONDER_ENV": "development"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def without_code(text: str, inline: bool = True) -> str:
    """Return the text without fenced code blocks (and inline code): a `# comment` there is no heading."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text) if inline else text


def anchors_of(page) -> set[str]:
    """Return the anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    found, times = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", without_code(page.read_text(encoding="utf-8"), False), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(f"{slug}-{times[slug]}" if slug in times else slug)  # a repeated heading gets -1, -2, ...
        times[slug] = times.get(slug, 0) + 1
    return found


def test_every_relative_link_in_the_readme_changelog_and_docs_resolves():
    broken = []
    for page in pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", without_code(page.read_text(encoding="utf-8"))):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif fragment and (linked.suffix != ".md" or fragment not in anchors_of(linked)):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_fast_suite_command_is_the_selection_the_mutation_run_uses():
    """Name the same pytest selection as pyproject's mutmut settings, which every `make mutate` runs."""
    (command,) = shell_blocks("docs/testing.md", "## Markers and the fast suite")
    selection = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    assert shlex.split(command) == [
        ".venv/bin/python",
        "-m",
        "pytest",
        *selection["pytest_add_cli_args_test_selection"][1:],
    ]
