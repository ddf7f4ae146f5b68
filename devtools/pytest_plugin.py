"""Test a conversation with pytest: a simulated Twilio toward the service, a clock to move, chat scripts as tests.

From the project's folder:

    .venv/bin/python -m pytest PATHS --conversation conversations.survey:step
    .venv/bin/python -m pytest PATHS --twilio-url https://sms.example.com/sms --twilio-token TOKEN

Fixtures: `twilio` (devtools.simulator.Simulator: `twilio.send("hi").text`), `clock` (`clock.advance(s)`
moves the service's and Twilio's clocks together), `app` (the service in-process, test settings, the
conversation), `conversation_contract` (the checks `make check` runs). `*.chat` files are test items.
Which conversation: a test module's `pytest.mark.conversation("module:callable")`, a script's
`# conversation: module:callable` line, else `--conversation`, else the ini option, else the built-in.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import tempfile
import time
from pathlib import Path

import pytest
import time_machine

REAL_MONOTONIC = time.monotonic
START = 1_800_000_000.0  # where the test clock stands still (2027-01-15), until a test moves it
TEST_PUBLIC_URL = "https://sms.example.com"
SCRIPT_CONVERSATION = re.compile(r"#\s*conversation:\s*(\S+)")
NEEDS_IN_PROCESS = (
    "needs the service in-process: with --twilio-url the tests play against a running server, "
    "whose clock a test cannot move"
)


def pytest_addoption(parser) -> None:
    group = parser.getgroup("responder", "testing a conversation of the SMS responder")
    group.addoption(
        "--conversation",
        metavar="MODULE:CALLABLE",
        help="the conversation the tests run (default: the ini option 'conversation', else the built-in)",
    )
    group.addoption("--twilio-url", metavar="URL", help="play the tests over HTTP against this webhook URL")
    group.addoption("--twilio-token", metavar="TOKEN", default="", help="the auth token to sign with there")
    parser.addini("conversation", "the conversation the tests run, as module:callable", default="")


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "conversation(target): run these tests against the conversation module:callable"
    )
    target = chosen_conversation(config)
    if target:
        check_target(
            target, "--conversation" if config.getoption("conversation") else "ini option conversation ="
        )


def chosen_conversation(config) -> str:
    """Return the conversation the command line or the ini file chose ('' for the built-in)."""
    return (config.getoption("conversation") or config.getini("conversation") or "").strip()


def check_target(target: str, where: str) -> None:
    """Refuse, in one line, a conversation that cannot run."""
    from conversation import ConversationError, load

    try:
        load(target)
    except ConversationError as exc:
        raise pytest.UsageError(f"{where} {target}: {exc}") from None


class Clock:
    """The test's frozen clock: call it for the time; `advance` moves the wall clock and time.monotonic
    (time-machine leaves the latter alone), as real time passing would; `step_wall_clock` moves the wall
    clock alone, as an NTP step or an operator's `date -s` does."""

    def __init__(self, traveller):
        self.traveller = traveller
        self.monotonic_offset = 0.0

    def __call__(self) -> float:
        return time.time()

    def advance(self, seconds: float) -> None:
        self.traveller.shift(seconds)
        self.monotonic_offset += seconds

    shift = advance  # the terminal phone's scripts call shift

    def step_wall_clock(self, seconds: float) -> None:
        self.traveller.shift(seconds)

    def monotonic(self) -> float:
        return REAL_MONOTONIC() + self.monotonic_offset


@contextlib.contextmanager
def frozen_clock():
    """Freeze the clock at START for a test; time.monotonic moves with `advance`."""
    with time_machine.travel(START, tick=False) as traveller:
        clock = Clock(traveller)
        time.monotonic = clock.monotonic
        try:
            yield clock
        finally:
            time.monotonic = REAL_MONOTONIC


def in_process_only(config) -> None:
    """Skip a test that needs the service in-process when the tests play against a running server."""
    if config.getoption("twilio_url"):
        pytest.skip(NEEDS_IN_PROCESS)


def service_settings(conversation_target: str) -> dict:
    """Return settings for an in-process service: every variable set (no .env leaks in), fresh test keys."""
    from config import VARIABLES

    return {
        **dict.fromkeys(VARIABLES, ""),
        "RESPONDER_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "PUBLIC_URL": TEST_PUBLIC_URL,
        "CONVERSATION": conversation_target,
        "TESTING": True,
    }


def build_app(conversation_target: str, instance_path: Path):
    """Build the service in-process with test settings and the conversation."""
    from responder import create_app

    return create_app(service_settings(conversation_target), instance_path=str(instance_path))


@pytest.fixture
def conversation_target(request) -> str:
    """The conversation these tests run: the module's marker, else the command line's, else the built-in."""
    marker = request.node.get_closest_marker("conversation")
    if marker:
        check_target(marker.args[0], "pytest.mark.conversation")
        return marker.args[0]
    return chosen_conversation(request.config)


@pytest.fixture
def clock(request):
    """Freeze the clock; `clock.advance(seconds)` moves the service's and Twilio's clocks together."""
    in_process_only(request.config)
    with frozen_clock() as frozen:
        yield frozen


@pytest.fixture
def app(request, conversation_target, tmp_path):
    """The service in-process, with test settings and the conversation under test."""
    in_process_only(request.config)
    return build_app(conversation_target, tmp_path / "instance")


@pytest.fixture
def twilio(request):
    """The simulated Twilio: toward the in-process service, or over HTTP to --twilio-url."""
    from devtools.simulator import twilio_for

    url = request.config.getoption("twilio_url")
    if url:
        return remote_twilio(request.config)
    return twilio_for(request.getfixturevalue("app"))


def remote_twilio(config):
    """Return a simulated Twilio toward --twilio-url that fails a test on a refused signature, with the refusal."""
    from devtools.simulator import HttpTransport, Simulator

    class RemoteTwilio(Simulator):
        def deliver(self, params, cookie=None):
            reply = super().deliver(params, cookie)
            if reply.status == 403:
                refusal = reply.body.decode("utf-8", "replace").strip()
                pytest.fail(
                    f"{self.url} answered {refusal!r}: give --twilio-token the server's TWILIO_AUTH_TOKEN and "
                    "--twilio-url the URL it checks signatures for (its PUBLIC_URL + /sms)",
                    pytrace=False,
                )
            return reply

    return RemoteTwilio(
        HttpTransport(), config.getoption("twilio_url"), token=config.getoption("twilio_token")
    )


@pytest.fixture
def conversation_contract(conversation_target, tmp_path):
    """Return a function that runs `make check`'s contract on the conversation, seeded: its first defect, or None."""
    from config import load_settings
    from contract import check_conversation

    def run(seed: int = 0, messages: int = 300):
        settings = load_settings(service_settings(conversation_target), tmp_path / "unused-key")
        return check_conversation(settings, seed=seed, messages=messages)

    return run


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix == ".chat":
        return ChatFile.from_parent(parent, path=file_path)
    return None


class ChatFile(pytest.File):
    """A chat script: one test item."""

    def collect(self):
        yield ChatItem.from_parent(self, name=self.path.name)


class ChatItem(pytest.Item):
    """Play a chat script against the conversation, in-process or over HTTP; fail with the transcript."""

    def runtest(self) -> None:
        from devtools.chat import Phone, play_script, script_lines

        url = self.config.getoption("twilio_url")
        if url:
            if any(kind == "~" for _, kind, _ in script_lines(self.path)):
                pytest.skip(f"waits (~ lines) {NEEDS_IN_PROCESS}")
            play_script(Phone(remote_twilio(self.config), clock=None, target=url), self.path)
            return
        target = self.script_conversation() or chosen_conversation(self.config)
        if target:
            check_target(target, f"{self.path.name}: conversation:")
        from devtools.simulator import twilio_for

        with tempfile.TemporaryDirectory() as instance, frozen_clock() as clock:
            app = build_app(target, Path(instance))
            play_script(Phone(twilio_for(app), clock, target="the in-process app"), self.path)

    def script_conversation(self) -> str:
        """Return the conversation a `# conversation: module:callable` line names ('' for none)."""
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if found := SCRIPT_CONVERSATION.fullmatch(line.strip()):
                return found.group(1)
        return ""

    def repr_failure(self, excinfo, style=None):
        from devtools.chat import ScriptFailure

        if isinstance(excinfo.value, ScriptFailure):
            transcript = "\n".join(f"    {line}" for line in excinfo.value.transcript) or "    (nothing sent)"
            return f"the conversation so far:\n{transcript}\n{excinfo.value.message}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, 0, f"chat script {self.name}"
