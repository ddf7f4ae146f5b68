"""`flask chat`: a phone in the terminal, and scripted conversations, against the real webhook."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import time_machine
from flask.cli import ScriptInfo

from devtools.simulator import (
    DEFAULT_FROM,
    DEFAULT_TO,
    OPTED_OUT_ERROR,
    HttpTransport,
    OptOutTexts,
    Simulator,
    cookie_payload,
    parse_duration,
    twilio_for,
)

# Script lines that check the last message's outcome: the service's delivered reply, Twilio's own
# auto-reply, a reply Twilio blocked (the phone had opted out). Empty text: expect none.
EXPECTATIONS = {
    "<": ("reply", "delivered"),
    "=": ("Twilio reply", "twilio_replies"),
    "!": ("blocked reply", "blocked"),
}
SCRIPT_MARKS = {"twilio": "=", "blocked": "!", "service": "<", "none": "<"}
# What a 403 from a running server (--url) most likely means.
PASS_SIGN_FOR = (
    "; the server checks signatures against its PUBLIC_URL: pass --sign-for PUBLIC_URL/sms "
    "(e.g. --sign-for https://sms.example.com/sms) and --token with its TWILIO_AUTH_TOKEN"
)
CHECK_SIGN_FOR = "; check that --sign-for is the server's PUBLIC_URL + /sms and --token its TWILIO_AUTH_TOKEN"
HELP = "commands: /wait 4h  /media URL  /new-phone [+number]  /quit   (Ctrl-D quits too)"


class ChatError(Exception):
    """Something the person at the phone should read: unreachable server, an HTTP error."""


def cookie_count(cookie_header: str) -> int | None:
    """Read the conversation count from the cookie (signed, not encrypted), as anyone holding it could."""
    try:
        return cookie_payload(cookie_header.split("=", 1)[1].split(";")[0]).get("n")
    except (IndexError, ValueError, AttributeError):
        return None


@dataclass
class Phone:
    """A texter's phone: who is texting whom, through which simulated Twilio."""

    twilio: Simulator
    clock: object  # has shift(seconds), moving this process's clock: a time-machine Traveller, the plugin's Clock
    sender: str = DEFAULT_FROM
    to: str = DEFAULT_TO
    media: list[str] = field(default_factory=list)
    target: str = ""

    def text(self, body: str):
        """Send one message; return the reply or raise ChatError with what went wrong."""
        media, self.media = self.media, []
        try:
            reply = self.twilio.send(body, self.sender, self.to, media=media)
        except OSError as exc:
            raise ChatError(
                f"cannot reach {self.target or self.twilio.url}: {exc.strerror or exc}. "
                "Is the server running (make run)?"
            ) from None
        if reply.status != 200:
            detail = reply.body.decode("utf-8", "replace").strip().splitlines()[:1]
            hint = ""
            if reply.status == 403 and isinstance(self.twilio.transport, HttpTransport):
                hint = CHECK_SIGN_FOR if self.twilio.sign_for else PASS_SIGN_FOR
            raise ChatError(f"the webhook answered HTTP {reply.status}: {' '.join(detail)}{hint}")
        return reply

    def status_line(self, reply) -> str:
        cookie = self.twilio.cookie_header(self.sender, self.to)
        count = cookie_count(cookie) if cookie else None
        opted_out = (
            " · opted out (START to resubscribe)" if self.twilio.is_opted_out(self.sender, self.to) else ""
        )
        return (
            f"count {count if count is not None else '-'} · cookie {len(cookie)} B · "
            f"{reply.segments} segment{'s' if reply.segments != 1 else ''}{opted_out}"
        )

    def transcript(self, reply) -> list[tuple[str, str]]:
        """Return what the phone shows for a reply: (who, text) for Twilio's messages and the service's."""
        lines = [("twilio", text) for text in reply.twilio_replies]
        lines += [("service", text) for text in reply.delivered]
        lines += [("blocked", text) for text in reply.blocked]
        return lines or [("none", "(no reply)")]

    def wait(self, duration: str) -> None:
        self.clock.shift(parse_duration(duration))


def build_phone(
    url: str | None, token: str | None, sender: str, to: str, clock, load_app=None, sign_for: str = ""
) -> Phone:
    """Connect a phone to a running server at `url` (signing for `sign_for` if given), or to the app in-process."""
    if url:
        twilio = Simulator(HttpTransport(), url, token=token or "", sign_for=sign_for)
        return Phone(twilio, clock, sender, to, target=url)
    app = load_app()
    logging.getLogger("responder").setLevel(logging.WARNING)  # the phone shows the replies instead
    return Phone(twilio_for(app, token or ""), clock, sender, to, target="the in-process app")


def dim(text: str) -> str:
    return click.style(text, dim=True)


def show(number: str, who: str, text: str) -> str:
    """Render one line of the phone's screen: the service's reply, Twilio's own, or a blocked one."""
    if who == "twilio":
        return click.style(f"{number} [Twilio]> {text}", fg="cyan")
    if who == "blocked":
        return click.style(
            f"{number}> (blocked by Twilio, error {OPTED_OUT_ERROR}: not delivered) {text}", fg="yellow"
        )
    return f"{number}> {text}"


def run_interactive(phone: Phone) -> int:
    import readline  # noqa: F401 - gives input() line editing and history

    click.echo(dim(f"Texting {phone.to} from {phone.sender} via {phone.target}. {HELP}"))
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            click.echo()
            return 0
        line = line.strip()
        if not line:
            continue
        command, _, argument = line.partition(" ")
        try:
            if command == "/quit":
                return 0
            elif command == "/wait":
                phone.wait(argument or "1h")
                click.echo(dim(f"(the clock moves on {argument or '1h'})"))
            elif command == "/media":
                phone.media.append(argument.strip())
                click.echo(dim("(attached to your next message)"))
            elif command == "/new-phone":
                phone.sender = argument.strip() or f"+1500555{int(phone.sender[-4:]) + 1:04d}"
                click.echo(dim(f"(now texting from {phone.sender})"))
            elif command.startswith("/") and command not in ("/",):
                click.echo(dim(HELP))
            else:
                reply = phone.text(line)
                for who, message in phone.transcript(reply):
                    click.echo(show(phone.to, who, message))
                click.echo(dim(f"      {phone.status_line(reply)}"))
        except (ChatError, ValueError) as exc:
            click.echo(click.style(f"! {exc}", fg="red"), err=True)


class ScriptFailure(Exception):
    """A chat script that did not go as written: where and why, and the transcript up to there."""

    def __init__(self, message: str, transcript: list[str]):
        super().__init__(message)
        self.message, self.transcript = message, transcript


def script_lines(path: Path) -> list[tuple[int, str, str]]:
    """Return a script's (line number, kind, rest) lines, comments and blank lines left out."""
    lines = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            kind, _, rest = line.partition(" ")
            lines.append((number, kind, rest.strip()))
    return lines


def play_script(phone: Phone, path: Path, show=lambda line: None) -> list[str]:
    """Play a conversation script; return its transcript, or raise ScriptFailure at the first mismatch."""
    transcript: list[str] = []
    last = None

    def note(line: str) -> None:
        transcript.append(line)
        show(line)

    for number, kind, rest in script_lines(path):
        try:
            if kind == ">":
                last = phone.text(rest)
                note(f"> {rest}")
                for who, message in phone.transcript(last):
                    note(f"{SCRIPT_MARKS.get(who, '<')} {message}")
            elif kind in EXPECTATIONS:
                what, field_name = EXPECTATIONS[kind]
                actual = "\n".join(getattr(last, field_name)) if last else ""
                is_match = (rest in actual) if rest else actual == ""
                if not is_match:
                    raise ScriptFailure(
                        f"{path}:{number}: expected {what} containing {rest!r}\n"
                        f"{path}:{number}: actual {what} was {actual!r}",
                        transcript,
                    )
            elif kind == "~":
                phone.wait(rest)
                note(f"~ {rest}")
            elif kind == "@":
                phone.sender = rest
                note(f"@ {rest}")
            elif kind == "+":
                phone.media.append(rest)
                note(f"+ {rest}")
            else:
                raise ValueError(f"unknown line kind {kind!r}; use >, <, =, !, ~, @, + or #")
        except (ChatError, ValueError) as exc:
            raise ScriptFailure(f"{path}:{number}: {exc}", transcript) from None
    return transcript


def run_script(phone: Phone, path: Path) -> int:
    """Play a conversation script, printing its transcript; return 1 on the first mismatch."""
    try:
        play_script(phone, path, show=click.echo)
    except ScriptFailure as failure:
        click.echo(failure.message, err=True)
        return 1
    return 0


@click.command("chat")
@click.option("--from", "sender", default=DEFAULT_FROM, show_default=True, help="The texter's number.")
@click.option("--to", default=DEFAULT_TO, show_default=True, help="The service's number.")
@click.option("--url", default=None, help="Webhook URL of a running server (default: in-process app).")
@click.option("--token", default=None, help="Twilio auth token to sign requests with.")
@click.option(
    "--sign-for",
    default="",
    metavar="URL",
    help="With --url: sign for this URL instead (the server's PUBLIC_URL + /sms: a proxy or tunnel between).",
)
@click.option("--media", multiple=True, help="Media URL to attach to the first message.")
@click.option(
    "--advanced-opt-out",
    is_flag=True,
    help="Play a Messaging Service with Advanced Opt-Out: Twilio sends OptOutType with keyword messages.",
)
@click.option(
    "--script", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Conversation script."
)
@click.pass_context
def chat_command(ctx, sender, to, url, token, sign_for, media, advanced_opt_out, script):
    """Text the webhook from a simulated phone (or play a conversation script)."""
    # The app `flask --app ...` names; without the flask command around it, the responder's own.
    info = ctx.ensure_object(ScriptInfo)
    if not info.app_import_path and info.create_app is None:
        info.app_import_path = "responder"
    travel = time_machine.travel(time.time(), tick=True)  # /wait moves this process's clock
    try:
        phone = build_phone(url, token, sender, to, travel.start(), load_app=info.load_app, sign_for=sign_for)
        phone.media = list(media)
        if advanced_opt_out:
            phone.twilio.advanced_opt_out = OptOutTexts()
        code = run_script(phone, script) if script else run_interactive(phone)
    finally:
        travel.stop()  # back to the real clock (this may run inside a test process)
    sys.exit(code)
