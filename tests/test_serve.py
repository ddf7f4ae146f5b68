"""`make serve` / `make run` start-up: settings are checked before any server starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, SECRET, TOKEN

pytestmark = pytest.mark.server

GOOD = {"SECRET_KEY": SECRET, "TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": "https://sms.example.com"}


def serve(mode, env, cwd=REPO):
    full = {"PATH": os.environ.get("PATH", ""), **env}
    return subprocess.run(
        [sys.executable, str(REPO / "serve.py"), mode],
        cwd=cwd,
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


def test_check_says_which_environment_it_judged_and_which_setting_decided(tmp_path):
    (tmp_path / ".env").write_text(f"PUBLIC_URL=https://sms.example.com\nTWILIO_AUTH_TOKEN={TOKEN}\n")
    judged_by_default = serve("check", {}, cwd=tmp_path)
    assert judged_by_default.returncode == 2
    assert (
        "(production: RESPONDER_ENV is not set, and production is the default; set RESPONDER_ENV=development"
        in (judged_by_default.stderr)
    )
    (tmp_path / ".env").write_text(f"RESPONDER_ENV=development\nTWILIO_AUTH_TOKEN={TOKEN}\n")
    development = serve("check", {}, cwd=tmp_path)
    assert development.returncode == 0
    assert "environment development: RESPONDER_ENV=development in .env\n" in development.stdout


def test_check_prints_the_settings_warnings(tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n+1 500 555 0101,Ada again\n")
    result = serve("check", {**GOOD, "PUBLIC_URL": "http://sms.example.com", "CALLERS_FILE": str(directory)})
    assert result.returncode == 0
    assert "warning: PUBLIC_URL='http://sms.example.com' is plain http" in result.stdout
    assert "warning: CALLERS_FILE: " in result.stdout and "duplicate of line 2" in result.stdout


FLASK = str(Path(sys.executable).parent / "flask")


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, str(REPO / "serve.py"), "run"],
        ["make", "--no-print-directory", "-C", str(REPO), "chat", "ARGS=--from +15005550101"],
        [FLASK, "--app", "responder", "routes"],
        [FLASK, "--app", "responder", "run", "--port", "0"],
    ],
    ids=["make run", "make chat", "flask routes", "flask run"],
)
def test_every_entry_point_names_a_bad_setting_in_one_line_and_exits_2(command):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "RESPONDER_ENV": "development",
        "GREETING_TEMPLATE": "Hi {body}",
    }
    result = subprocess.run(
        command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
    )
    assert "Traceback" not in result.stderr
    assert "fix these settings:\n  - GREETING_TEMPLATE: unknown placeholder(s) body" in result.stderr
    if command[0] == "make":  # make exits 2 for any failed recipe; it names the command's own status
        assert result.stderr.rstrip().endswith("Error 2")
    assert result.returncode == 2


def test_flask_help_names_a_bad_setting_in_its_error_line_instead_of_a_traceback():
    env = {
        "PATH": os.environ.get("PATH", ""),
        "RESPONDER_ENV": "development",
        "GREETING_TEMPLATE": "Hi {body}",
    }
    result = subprocess.run(
        [FLASK, "--app", "responder", "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=30
    )
    assert "Traceback" not in result.stderr
    assert "Error: The responder cannot start; fix these settings:\n  - GREETING_TEMPLATE:" in result.stderr
    assert "routes" in result.stdout and result.returncode == 0  # the help itself, without the app's commands
