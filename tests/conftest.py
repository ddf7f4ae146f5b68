"""Fixtures that play Twilio toward an app built with the test's own settings, on a clock tests can move."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import pytest
import time_machine
from helpers import REPO, TOKEN, WEBHOOK_URL, production_settings
from hypothesis import settings as hypothesis_settings

from config import VARIABLES
from devtools.servers import Server, free_port
from devtools.simulator import FlaskTransport, Simulator
from responder import create_app

# The mutation run (pyproject.toml, [tool.mutmut]) reruns the fast tests for every mutant: fewer examples.
hypothesis_settings.register_profile("mutation", max_examples=10)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """Keep the developer's environment and `.env` out of the tests."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


class Clock:
    """The frozen wall clock of a test (time-machine): call it for the time, `advance` to move it.

    `advance` moves time.monotonic too (time-machine leaves it alone), as real time passing would;
    `step_wall_clock` moves the wall clock alone, as an NTP step or an operator's `date -s` does.
    """

    def __init__(self, traveller, monotonic_offset: list[float]):
        self.traveller = traveller
        self.monotonic_offset = monotonic_offset

    def __call__(self) -> float:
        return time.time()

    def advance(self, seconds: float) -> None:
        self.traveller.shift(seconds)
        self.monotonic_offset[0] += seconds

    def step_wall_clock(self, seconds: float) -> None:
        self.traveller.shift(seconds)


@pytest.fixture
def clock(monkeypatch):
    offset = [0.0]
    real_monotonic = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + offset[0])
    with time_machine.travel(1_800_000_000.0, tick=False) as traveller:
        yield Clock(traveller, offset)


@pytest.fixture
def make_app(clock, tmp_path):
    """Build an app: production settings (test key, token, PUBLIC_URL), plus the test's overrides."""

    def make(instance_path: str | None = None, **overrides):
        config = production_settings(**overrides)
        return create_app(config, instance_path=instance_path or str(tmp_path / "instance"))

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def make_phone(clock):
    """Build a simulated Twilio toward an app (in-process) with its own cookie jars."""

    def make(app, url=WEBHOOK_URL, token=TOKEN, method="POST"):
        return Simulator(FlaskTransport(app), url, token=token, method=method)

    return make


@pytest.fixture
def twilio(app, make_phone):
    return make_phone(app)


@pytest.fixture
def webhook_log(caplog):
    """The webhook's log records, one per request."""
    caplog.set_level(logging.INFO, logger="responder")

    def records():
        return [r.webhook for r in caplog.records if hasattr(r, "webhook")]

    return records


@pytest.fixture
def start_server(tmp_path):
    """Start a server command with production settings on a free port of 127.0.0.1; stop it afterwards."""
    servers = []

    def start(command: list[str], prefix: tuple[str, ...] = (), **settings: str) -> Server:
        port = free_port()
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "WEB_CONCURRENCY": "2"}
        env |= production_settings(f"http://127.0.0.1:{port}", HOST="127.0.0.1", PORT=str(port), **settings)
        log_path = tmp_path / f"server-{len(servers)}.log"
        server = Server([*prefix, *command], env, port, log_path, tmp_path)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def production_server(start_server):
    """Start `gunicorn -c gunicorn.conf.py` (what `make serve` runs) with production settings."""

    def start(prefix: tuple[str, ...] = (), **settings: str) -> Server:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        return start_server([gunicorn, "-c", str(REPO / "gunicorn.conf.py")], prefix, **settings)

    return start
