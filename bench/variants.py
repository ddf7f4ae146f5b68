"""The four servers measured side by side, and the production settings they run with."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from config import VARIABLES

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

DIRECTORY_SIZE = 1000
# The base URL "configured in the Twilio Console": every webhook is signed for PUBLIC_URL + "/sms", and
# the service checks that URL whatever port the bench gave it, as a deployed service behind a proxy does.
PUBLIC_URL = "http://127.0.0.1"


@dataclass(frozen=True)
class BenchSettings:
    """What every run shares: signing key, Twilio auth token, caller directory, workers."""

    secret_key: str
    auth_token: str
    callers_file: Path
    workers: int

    @classmethod
    def create(cls, out: Path, workers: int) -> BenchSettings:
        callers_file = out / "callers.csv"
        write_directory(callers_file, DIRECTORY_SIZE)
        return cls(secrets.token_urlsafe(48), secrets.token_hex(16), callers_file, workers)

    def service_env(self, port: int, workers: int | None = None) -> dict[str, str]:
        """The production settings `make serve` needs, signature checks on against PUBLIC_URL, as deployed."""
        env = base_env(workers or self.workers)
        env.update(
            RESPONDER_ENV="production",
            SECRET_KEY=self.secret_key,
            TWILIO_AUTH_TOKEN=self.auth_token,
            PUBLIC_URL=PUBLIC_URL,
            CALLERS_FILE=str(self.callers_file),
            HOST="127.0.0.1",
            PORT=str(port),
        )
        return env

    def service_overrides(self) -> dict[str, str]:
        """The same settings for create_app(overrides) in-process."""
        env = self.service_env(port=5000)
        return {name: env[name] for name in VARIABLES}


def sender(i: int) -> str:
    """The From number of pair i (E.164, as Twilio sends it); the directory names the first 1000."""
    return f"+1{5005550000 + i}"


def write_directory(path: Path, rows: int) -> None:
    lines = ["number,name"] + [f"{sender(i)},Caller {i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def base_env(workers: int) -> dict[str, str]:
    # Every service variable is set explicitly, so neither the caller's environment nor a `.env` in the
    # repository changes what is measured (an empty value means "use the default").
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES and k != "GUNICORN_CMD_ARGS"}
    env.update({name: "" for name in VARIABLES})
    env["WEB_CONCURRENCY"] = str(workers)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True)
class Variant:
    """One server under test: how to start it on a port, and what its replies prove."""

    name: str
    app: str
    server: str
    counts: bool  # replies state the conversation's count, so cookie round-trips can be checked
    service: bool  # the real service: its signature check is verified before the load

    def command(self, port: int, workers: int) -> list[str]:
        python, gunicorn = str(BIN / "python"), str(BIN / "gunicorn")
        bind = f"127.0.0.1:{port}"
        if self.name == "shipped":
            return [python, "serve.py", "serve"]
        if self.name == "baseline":
            return [gunicorn, "-w", str(workers), "-b", bind, "bench.baseline_app:app"]
        if self.name == "service-on-gunicorn":
            return [gunicorn, "-w", str(workers), "-b", bind, "responder:create_app()"]
        if self.name == "Flask floor":
            return [gunicorn, "-c", "gunicorn.conf.py", "--bind", bind, "bench.floor_app:app"]
        raise ValueError(self.name)

    def env(self, settings: BenchSettings, port: int) -> dict[str, str]:
        if self.service:
            return settings.service_env(port)
        env = base_env(settings.workers)
        env["SECRET_KEY"] = settings.secret_key
        return env


VARIANTS = (
    Variant("shipped", "the service", "gunicorn (gevent): python serve.py serve", counts=True, service=True),
    Variant("baseline", "bench/baseline_app.py", "gunicorn -w N (sync)", counts=True, service=False),
    Variant("service-on-gunicorn", "the service", "gunicorn -w N (sync)", counts=True, service=True),
    Variant(
        "Flask floor",
        "bench/floor_app.py",
        "the shipped server: gunicorn -c gunicorn.conf.py",
        counts=False,
        service=False,
    ),
)
