"""docs/mounting.md: the responder mounted under /twilio in a host Flask app, as the page writes it."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest
from helpers import ALICE, GREETING, REPO, SERVICE, TOKEN, count_reply, production_settings

from devtools.servers import Server, free_port, wait_until
from devtools.simulator import FlaskTransport, HttpTransport, Simulator

PAGE = REPO / "docs" / "mounting.md"
MOUNTED_URL = "https://sms.example.com/twilio"  # PUBLIC_URL: what Twilio calls, minus /sms


def host_source() -> str:
    (block,) = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    return block


def host_app(tmp_path: Path, monkeypatch, public_url: str):
    """Import the page's host.py with production settings for `public_url`; return its app."""
    for name, value in production_settings(public_url).items():
        monkeypatch.setenv(name, value)
    (tmp_path / "host.py").write_text(host_source(), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("host", tmp_path / "host.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def test_the_mounted_responder_answers_a_webhook_signed_for_public_url_with_the_prefix(tmp_path, monkeypatch):
    app = host_app(tmp_path, monkeypatch, MOUNTED_URL)
    twilio = Simulator(FlaskTransport(app), MOUNTED_URL + "/sms", token=TOKEN)
    assert twilio.send("hello", ALICE, SERVICE).text == GREETING
    assert twilio.send("again", ALICE, SERVICE).text == count_reply(2)
    assert app.test_client().get("/").get_data(as_text=True) == "the host app"


def test_a_public_url_without_the_mount_point_is_refused(tmp_path, monkeypatch):
    app = host_app(tmp_path, monkeypatch, "https://sms.example.com")
    twilio = Simulator(FlaskTransport(app), MOUNTED_URL + "/sms", token=TOKEN)
    assert twilio.send("hello", ALICE, SERVICE).status == 403


def test_the_page_names_every_top_level_module_of_the_service():
    modules = {path.stem for path in REPO.glob("*.py") if path.stem.isidentifier()}  # not gunicorn.conf
    modules |= {
        path.parent.name for path in REPO.glob("*/__init__.py") if path.parent.name == "conversations"
    }
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    named = text.split("**Module names.**", 1)[1].split("- **Settings**", 1)[0]
    assert set(re.findall(r"`([a-z_]+)`", named)) == modules


@pytest.mark.server
def test_the_host_app_serves_the_mounted_webhook_under_gunicorns_gevent_worker(tmp_path):
    (tmp_path / "host.py").write_text(host_source(), encoding="utf-8")
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "PYTHONPATH": str(REPO)}
    env |= production_settings(MOUNTED_URL, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    (tmp_path / "metrics").mkdir()
    command = [gunicorn, "--worker-class", "gevent_worker.Worker", "-b", f"127.0.0.1:{port}", "host:app"]
    server = Server(command, env, port, tmp_path / "server.log", tmp_path)
    try:
        server.spawn()
        wait_until(lambda: server.get("/twilio/healthz") == 200, 30, "the mounted /twilio/healthz")
        twilio = Simulator(HttpTransport(f"http://127.0.0.1:{port}"), MOUNTED_URL + "/sms", token=TOKEN)
        assert twilio.send("hello", ALICE, SERVICE).text == GREETING
        assert server.get("/") == 200 and server.get("/sms") == 404
    finally:
        server.stop()
