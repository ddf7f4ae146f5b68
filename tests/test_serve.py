"""`make serve` / `make run` start-up: settings are checked before any server starts."""

import os
import subprocess
import sys

import pytest
from conftest import SECRET, TOKEN
from live_server import REPO

pytestmark = pytest.mark.server

GOOD = {"SECRET_KEY": SECRET, "TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": "https://sms.example.com"}


def serve(mode, env):
    full = {"PATH": os.environ.get("PATH", ""), **env}
    return subprocess.run(
        [sys.executable, str(REPO / "serve.py"), mode],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "complaints"),
    [
        ({}, ["SECRET_KEY is not set", "TWILIO_AUTH_TOKEN is not set", "PUBLIC_URL is not set"]),
        ({"RESPONDER_ENV": "development"}, ["make serve needs production settings"]),
        ({"SECRET_KEY": "short", "TWILIO_AUTH_TOKEN": TOKEN}, ["SECRET_KEY is 5 characters"]),
        ({**GOOD, "WEB_CONCURRENCY": "many"}, ["WEB_CONCURRENCY"]),
    ],
)
def test_serve_refuses_to_start_without_production_settings(env, complaints):
    result = serve("serve", env)
    assert result.returncode == 2
    for complaint in complaints:
        assert complaint in result.stderr
    assert "Traceback" not in result.stderr
    if "SECRET_KEY" in env:
        assert env["SECRET_KEY"] not in result.stderr


def test_check_reports_good_settings_and_the_url_for_the_twilio_console():
    result = serve("check", GOOD)
    assert result.returncode == 0
    assert "settings OK (production); signatures checked" in result.stdout
    assert "A message comes in: https://sms.example.com/sms\n" in result.stdout


def test_web_concurrency_is_read_from_dot_env_like_every_setting(tmp_path, monkeypatch):
    import serve

    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    (tmp_path / ".env").write_text("WEB_CONCURRENCY=3\n")  # the tests run in tmp_path
    assert serve.worker_count() == 3
    monkeypatch.setenv("WEB_CONCURRENCY", "2")  # the environment wins, as for the others
    assert serve.worker_count() == 2
