"""Settings: production refuses weak ones, development needs none, every error names its variable."""

import stat

import pytest
from conftest import SECRET, TOKEN

from config import ConfigError, load_settings, read_environment
from responder import create_app

GOOD = {"RESPONDER_ENV": "production", "SECRET_KEY": SECRET, "TWILIO_AUTH_TOKEN": TOKEN}


def problems(env, tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_settings(env, tmp_path / "dev-secret-key")
    return caught.value.problems


def test_good_production_settings_load(tmp_path):
    settings = load_settings(GOOD, tmp_path / "key")
    assert settings.is_production and settings.checks_signatures
    assert settings.idle_seconds == 14400 and settings.trusted_proxies == 0 and settings.port == 5000


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "too-short-but-random-9f8e7d"}, "SECRET_KEY"),
        ({"SECRET_KEY": "please-change-this-secret-key-in-production"}, "SECRET_KEY"),
        ({"SECRET_KEY": "a" * 40}, "SECRET_KEY"),
        ({"TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN"),
        ({"SECRET_KEY_FALLBACKS": "short"}, "SECRET_KEY_FALLBACKS"),
        ({"RESPONDER_ENV": "staging"}, "RESPONDER_ENV"),
        ({"PUBLIC_URL": "sms.example.com"}, "PUBLIC_URL"),
        ({"PUBLIC_URL": "https://sms.example.com/?x=1"}, "PUBLIC_URL"),
        ({"TRUSTED_PROXIES": "one"}, "TRUSTED_PROXIES"),
        ({"TRUSTED_PROXIES": "-1"}, "TRUSTED_PROXIES"),
        ({"CONVERSATION_IDLE_SECONDS": "0"}, "CONVERSATION_IDLE_SECONDS"),
        ({"CONVERSATION_IDLE_SECONDS": "86400"}, "CONVERSATION_IDLE_SECONDS"),
        ({"PORT": "99999"}, "PORT"),
        ({"DEFAULT_REGION": "ZZ"}, "DEFAULT_REGION"),
        ({"GREETING_TEMPLATE": "Hi {nmae}"}, "GREETING_TEMPLATE"),
        ({"COUNT_REPLY_TEMPLATE": "#{count"}, "COUNT_REPLY_TEMPLATE"),
        ({"HELP_TEXT": "x" * 1601}, "HELP_TEXT"),
        ({"TWILIO_AUTH_TOKEN": "", "TWILIO_AUTH_TOKEN_SECONDARY": TOKEN}, "TWILIO_AUTH_TOKEN"),
    ],
)
def test_each_bad_setting_is_refused_naming_the_variable(tmp_path, change, variable):
    found = problems({**GOOD, **change}, tmp_path)
    assert len(found) == 1
    assert found[0].startswith(variable)


def test_secrets_never_appear_in_error_messages(tmp_path):
    weak = "please-change-this-secret-key-in-production"
    found = problems({**GOOD, "SECRET_KEY": weak, "SECRET_KEY_FALLBACKS": "short-old-key"}, tmp_path)
    assert len(found) == 2
    assert not any(weak in p or "short-old-key" in p for p in found)


def test_production_is_the_default_and_refuses_to_start_with_nothing(tmp_path):
    found = problems({}, tmp_path)
    assert [p.split()[0] for p in found] == ["SECRET_KEY", "TWILIO_AUTH_TOKEN"]


def test_development_generates_a_secret_once_and_keeps_it(tmp_path):
    key_file = tmp_path / "instance" / "dev-secret-key"
    first = load_settings({"RESPONDER_ENV": "development"}, key_file)
    second = load_settings({"RESPONDER_ENV": "development"}, key_file)
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not first.checks_signatures
    assert any("NOT checked" in w for w in first.warnings)


def test_the_dot_env_file_is_honoured_and_the_environment_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("PORT=6000\nHOST=0.0.0.0\n")
    monkeypatch.setenv("PORT", "7000")
    env = read_environment({}, dotenv=str(tmp_path / ".env"))
    assert env["PORT"] == "7000" and env["HOST"] == "0.0.0.0"


def test_create_app_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RESPONDER_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", SECRET)
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        create_app({"INSTANCE_PATH": str(tmp_path)})
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    assert create_app({"INSTANCE_PATH": str(tmp_path)}).extensions["responder"].settings.is_production


def test_a_bad_caller_directory_stops_start_up_naming_file_and_line(make_app, tmp_path):
    bad = tmp_path / "callers.csv"
    bad.write_text("number,name\n+15005550101,Ada\nnonsense,Bob\n")
    with pytest.raises(ConfigError, match=r"CALLERS_FILE: .*callers.csv:3:"):
        make_app(CALLERS_FILE=str(bad))


def test_a_missing_caller_directory_stops_start_up(make_app, tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        make_app(CALLERS_FILE=str(tmp_path / "missing.csv"))
