"""The service's own fixtures, on top of the project's pytest plugin (devtools/pytest_plugin.py: `twilio`,
`clock`): `app` runs the probe conversation with the tests' settings; servers start on free ports."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
from helpers import PROBE, REPO, TOKEN, WEBHOOK_URL, MemoryCgroup, probe_env, production_settings
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


@pytest.fixture
def make_app(clock, tmp_path):
    """Build an app: production settings (test key, token, PUBLIC_URL), the probe conversation, the test's overrides."""

    def make(instance_path: str | None = None, **overrides):
        config = production_settings(**{"CONVERSATION": PROBE, **overrides})
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
def webhook_log(caplog):
    """The webhook's log records, one per request."""
    caplog.set_level(logging.INFO, logger="responder")

    def records():
        return [r.webhook for r in caplog.records if hasattr(r, "webhook")]

    return records


@pytest.fixture
def start_server(tmp_path):
    """Start a server command with production settings and the probe conversation on a free port of 127.0.0.1."""
    servers = []

    def start(command: list[str], prefix: tuple[str, ...] = (), **settings: str) -> Server:
        port = free_port()
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "WEB_CONCURRENCY": "2", **probe_env()}
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


@pytest.fixture
def memory_cgroup():
    """Make cgroup v1 memory groups with a limit, for servers to run in (as root); remove them afterwards."""
    groups = []

    def make(limit: int) -> MemoryCgroup:
        groups.append(MemoryCgroup(limit))
        return groups[-1]

    yield make
    for group in groups:
        group.remove()
