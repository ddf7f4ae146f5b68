"""Settings: production refuses weak ones, development needs none, every error names its variable."""

import os
import secrets
import stat
from pathlib import Path

import pytest
from helpers import REPO, SECRET, TOKEN, problems, production_settings, rewrite, scaled_examples

from config import ConfigError, load_settings, read_environment
from responder import create_app

GOOD = production_settings()


def test_good_production_settings_load(tmp_path):
    settings = load_settings(GOOD, tmp_path / "key")
    assert settings.is_production and settings.checks_signatures
    assert settings.idle_seconds == 14400 and settings.trusted_proxies == 0 and settings.port == 5000


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"SECRET_KEY": "too-short-but-random-9f8e7d"}, "SECRET_KEY"),
        ({"SECRET_KEY": "please-change-this-secret-key-in-production"}, "SECRET_KEY"),
        ({"SECRET_KEY": "a" * 40}, "SECRET_KEY"),
        ({"SECRET_KEY_FALLBACKS": "short"}, "SECRET_KEY_FALLBACKS"),
        ({"PUBLIC_URL": "sms.example.com"}, "PUBLIC_URL"),
        ({"TRUSTED_PROXIES": "-1"}, "TRUSTED_PROXIES"),
        ({"CONVERSATION_IDLE_SECONDS": "0"}, "CONVERSATION_IDLE_SECONDS"),
        ({"CONVERSATION_IDLE_SECONDS": "86400"}, "CONVERSATION_IDLE_SECONDS"),
        ({"PORT": "99999"}, "PORT"),
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
    assert [p.split()[0] for p in found] == ["SECRET_KEY", "TWILIO_AUTH_TOKEN", "PUBLIC_URL"]


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
    monkeypatch.setenv("PUBLIC_URL", "https://sms.example.com")
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        create_app(instance_path=str(tmp_path))
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    assert create_app(instance_path=str(tmp_path)).config["RESPONDER_ENV"] == "production"


def test_a_bad_caller_directory_stops_start_up_naming_file_and_line(make_app, tmp_path):
    bad = tmp_path / "callers.csv"
    bad.write_text("number,name\n+15005550101,Ada\nnonsense,Bob\n")
    with pytest.raises(ConfigError, match=r"CALLERS_FILE: .*callers.csv:3:"):
        make_app(CALLERS_FILE=str(bad))


def test_a_missing_caller_directory_stops_start_up(make_app, tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        make_app(CALLERS_FILE=str(tmp_path / "missing.csv"))


GUESSABLE = [
    "mysecretkeymysecretkeymysecretkey",
    "supersecretkeysupersecretkey1234",
    "abcdefghabcdefghabcdefghabcdefgh",
    "changeme-changeme-changeme-changeme",
    "passwordpasswordpasswordpassword",
    "my-flask-secret-key-for-twilio-app",
    "abcdefghijklmnopqrstuvwxyzABCDEF",
    "0123456789012345678901234567890123",
    "qwertyqwertyqwertyqwertyqwertyqw",
    "x" * 31 + "y",
    "mysecretkeyforflaskapp1234567890abcdefgh",  # words and runs, neither enough alone
    "ourflasktwilioapp-0123456789-abcdefghij",
]


@pytest.mark.parametrize("key", GUESSABLE)
def test_guessable_secret_keys_are_refused(tmp_path, key):
    (problem,) = problems({**GOOD, "SECRET_KEY": key}, tmp_path)
    assert problem.startswith("SECRET_KEY is a well-known or guessable value") and key not in problem


@pytest.mark.parametrize("make_key", [lambda: secrets.token_urlsafe(24), lambda: secrets.token_hex(16),
                                      lambda: secrets.token_urlsafe(48)], ids=["urlsafe-32", "hex-32", "urlsafe-64"])  # fmt: skip
def test_random_keys_are_accepted(tmp_path, make_key):
    for _ in range(scaled_examples(2000)):
        key = make_key()
        assert load_settings({**GOOD, "SECRET_KEY": key}, tmp_path / "k").secret_key == key


@pytest.mark.parametrize("token", ["x", "changeme", "0123456789abcdef0123456789abcde", "g" * 32, TOKEN + "0"])
def test_an_auth_token_that_is_not_32_hex_characters_is_refused(tmp_path, token):
    (problem,) = problems({**GOOD, "TWILIO_AUTH_TOKEN": token}, tmp_path)
    assert problem.startswith("TWILIO_AUTH_TOKEN is not a Twilio auth token")
    assert len(token) < 3 or token not in problem


def test_the_secret_key_must_not_be_the_auth_token(tmp_path):
    token = secrets.token_hex(16)
    (problem,) = problems({**GOOD, "SECRET_KEY": token, "TWILIO_AUTH_TOKEN": token}, tmp_path)
    assert problem.startswith("SECRET_KEY is the Twilio auth token")


@pytest.mark.parametrize(
    "template",
    ["{count:>99999999999}", "{name:.5}", "{to!r}", "{name}" * 17, "x" * 1590 + "{count}"],
)
def test_a_template_whose_rendering_is_not_bounded_is_a_one_line_error(tmp_path, template):
    (problem,) = problems({**GOOD, "GREETING_TEMPLATE": template}, tmp_path)
    assert problem.startswith("GREETING_TEMPLATE")


def test_a_template_just_within_the_limit_is_accepted(tmp_path):
    template = "x" * (1600 - 100 - 13) + "{name}{count}"  # a 100-character name and a 13-digit count
    assert load_settings({**GOOD, "GREETING_TEMPLATE": template}, tmp_path / "k").greeting == template


def test_the_caller_directory_is_listed_with_every_other_problem(tmp_path):
    bad = tmp_path / "callers.csv"
    bad.write_text("number,name\nnonsense,Bob\n")
    found = problems({**GOOD, "CALLERS_FILE": str(bad), "PORT": "0", "SECRET_KEY": "short"}, tmp_path)
    assert sorted(p.split()[0].rstrip(":") for p in found) == ["CALLERS_FILE", "PORT=0", "SECRET_KEY"]


def test_production_needs_public_url_and_says_where_to_find_it(tmp_path):
    (problem,) = problems({**GOOD, "PUBLIC_URL": ""}, tmp_path)
    assert problem.startswith("PUBLIC_URL is not set") and "Twilio Console" in problem


def test_several_public_urls_are_read_in_order(tmp_path):
    env = {**GOOD, "PUBLIC_URL": "https://sms.example.com/, https://other.example.net/twilio"}
    settings = load_settings(env, tmp_path / "k")
    assert settings.public_urls == ("https://sms.example.com", "https://other.example.net/twilio")
    (problem,) = problems({**env, "PUBLIC_URL": "https://sms.example.com,ftp://x"}, tmp_path)
    assert problem.startswith("PUBLIC_URL='ftp://x'")


def test_development_needs_no_public_url(tmp_path):
    assert load_settings({"RESPONDER_ENV": "development"}, tmp_path / "k").public_urls == ()


@pytest.mark.parametrize(
    ("name", "accepted", "refused"),
    [
        ("CONVERSATION_IDLE_SECONDS", ["1", "2", "14399", "14400"], ["0", "14401", "-1", "4h"]),
        ("TRUSTED_PROXIES", ["0", "1", "9", "10"], ["11", "-1"]),
        ("PORT", ["1", "2", "65534", "65535"], ["0", "65536"]),
    ],
)
def test_each_numeric_bound_holds_at_just_inside_and_just_outside_its_limits(
    tmp_path, name, accepted, refused
):
    for value in accepted:
        settings = load_settings({**GOOD, name: value}, tmp_path / "k")
        field = {
            "CONVERSATION_IDLE_SECONDS": "idle_seconds",
            "TRUSTED_PROXIES": "trusted_proxies",
            "PORT": "port",
        }
        assert getattr(settings, field[name]) == int(value)
    for value in refused:
        (problem,) = problems({**GOOD, name: value}, tmp_path)
        assert problem.startswith(f"{name}=")


@pytest.mark.parametrize("length", [31, 32, 33])
def test_secret_keys_need_32_characters(tmp_path, length):
    key = (secrets.token_urlsafe(48) * 2)[:length]
    if length < 32:
        (problem,) = problems({**GOOD, "SECRET_KEY": key}, tmp_path)
        assert problem == (
            f"SECRET_KEY is {length} characters; use at least 32, e.g. the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    else:
        assert load_settings({**GOOD, "SECRET_KEY": key}, tmp_path / "k").secret_key == key


@pytest.mark.parametrize(
    "key",
    [
        "change-me-to-a-long-random-string-of-32-chars",
        "replace-this-with-a-long-random-secret-key",
        "please-change-this-secret-key-in-production",
        "this-is-a-very-secret-key-for-development",
        "your-secret-key-here-make-it-long-and-random",
        "super-secret-key-that-nobody-will-ever-guess",
        "0123456789abcdef0123456789abcdef",
        "abcdefghijklmnopqrstuvwxyz012345",
        "12345678901234567890123456789012",
        "keep it secret, keep it safe. keep it secret!",
        "you-will-never-guess-this-secret-key-12345",
        "Please-Change-This-Secret-Key-In-Production",  # case does not hide it
    ],
)
def test_every_well_known_sample_key_is_refused(tmp_path, key):
    other_token = "fedcba9876543210fedcba9876543210"  # one sample is the tests' own token
    (problem,) = problems({**GOOD, "SECRET_KEY": key, "TWILIO_AUTH_TOKEN": other_token}, tmp_path)
    assert problem.startswith("SECRET_KEY is a well-known or guessable value")


@pytest.mark.parametrize(
    "url", ["ftp://sms.example.com", "https://", "sms.example.com", "https://x.example/#top"]
)
def test_public_url_must_be_an_http_or_https_base_url(tmp_path, url):
    (problem,) = problems({**GOOD, "PUBLIC_URL": url}, tmp_path)
    assert problem.startswith(f"PUBLIC_URL={url.rstrip('/')!r}")


@pytest.mark.parametrize("url", ["http://sms.example.com", "https://sms.example.com:8443/twilio"])
def test_http_and_https_public_urls_with_ports_and_paths_are_accepted(tmp_path, url):
    assert load_settings({**GOOD, "PUBLIC_URL": url}, tmp_path / "k").public_urls == (url,)


def test_several_fallback_keys_are_each_checked_and_kept_in_order(tmp_path):
    first, second = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    settings = load_settings({**GOOD, "SECRET_KEY_FALLBACKS": f" {first} ,{second},"}, tmp_path / "k")
    assert settings.secret_key_fallbacks == (first, second)
    found = problems({**GOOD, "SECRET_KEY_FALLBACKS": f"{first},short,{'a' * 40}"}, tmp_path)
    assert [p.split(" is")[0] for p in found] == [
        "SECRET_KEY_FALLBACKS (key 2)",
        "SECRET_KEY_FALLBACKS (key 3)",
    ]


def test_default_region_and_host_are_read(tmp_path):
    defaults = load_settings(GOOD, tmp_path / "k")
    assert defaults.default_region == "US" and defaults.host == "127.0.0.1"
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n020 7946 0018,Ada\n")
    settings = load_settings(
        {**GOOD, "DEFAULT_REGION": "gb", "HOST": "0.0.0.0", "CALLERS_FILE": str(directory)}, tmp_path / "k"
    )
    assert settings.default_region == "GB" and settings.host == "0.0.0.0"
    assert settings.directory.names == {"+442079460018": "Ada"}


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        ("https://<your-host>", "<placeholder>"),
        ("https://<your-host", "<placeholder>"),
        ("https://your-host>", "<placeholder>"),
        ("https://your-host", "placeholder host"),
        ("https://your-domain/twilio", "placeholder host"),
        ("https://yourdomain.com", "placeholder host"),
        ("https://Your-App.herokuapp.com", "placeholder host"),
        ("https://host:8443", "placeholder host"),
        ("https://hostname", "placeholder host"),
        ("https://domain.", "placeholder host"),
        ("https://:8443", "is not a host name"),
        ("https://sms example.com", "whitespace"),
        ("https://sms.example.com:abc", "the port must be a number"),
        ("https://sms.example.com:0", "the port must be a number"),
        ("https://sms.example.com:", "the port must be a number"),
        ("https://sms_example!.com", "is not a host name"),
        ("https://sms..example.com", "is not a host name"),
        ("https://sms.example.com/sms", "drop /sms"),
        ("https://sms.example.com/twilio/sms/", "drop /sms"),
    ],
)
def test_a_public_url_that_would_refuse_every_webhook_is_refused_saying_why(tmp_path, url, advice):
    (problem,) = problems({**GOOD, "PUBLIC_URL": url}, tmp_path)
    assert problem.startswith(f"PUBLIC_URL={url.rstrip('/')!r}") and advice in problem


def test_a_public_url_ending_in_sms_is_refused_with_the_value_to_set(tmp_path):
    (problem,) = problems({**GOOD, "PUBLIC_URL": "https://sms.example.com/sms"}, tmp_path)
    assert "PUBLIC_URL=https://sms.example.com for the webhook https://sms.example.com/sms" in problem


@pytest.mark.parametrize(
    "url",
    ["https://[2001:db8::1]:8443", "https://10.0.0.7", "https://bücher.example", "https://x.example/staging",
     "https://sms.example.com/smsgateway", "https://localhost:5000", "https://sms.example.com.",
     "https://yourls.example.org", "https://hosting.example.net", "https://my-domain-shop.example"],
)  # fmt: skip
def test_ip_addresses_international_names_and_path_prefixes_are_accepted(tmp_path, url):
    assert load_settings({**GOOD, "PUBLIC_URL": url}, tmp_path / "k").public_urls == (url,)


def test_plain_http_in_production_draws_a_warning_and_not_in_development(tmp_path):
    env = {**GOOD, "PUBLIC_URL": "https://sms.example.com,http://sms.example.net"}
    (warning,) = load_settings(env, tmp_path / "k").warnings
    assert warning.startswith("PUBLIC_URL='http://sms.example.net' is plain http") and "https://" in warning
    assert warning == (
        "PUBLIC_URL='http://sms.example.net' is plain http: webhooks and their conversation cookies cross the "
        "network unencrypted; give Twilio an https:// URL in production"
    )
    development = {**env, "RESPONDER_ENV": "development"}
    assert not [w for w in load_settings(development, tmp_path / "k").warnings if "PUBLIC_URL" in w]


def test_every_bad_row_of_the_caller_directory_is_its_own_problem(tmp_path):
    bad = tmp_path / "callers.csv"
    bad.write_text("number,name\nnonsense,Bob\n+15005550101,Ada\n+15005550102,\n")
    found = problems({**GOOD, "CALLERS_FILE": str(bad)}, tmp_path)
    assert [p.split(" ")[1].rsplit(":", 2)[1] for p in found] == ["2", "4"]
    assert all(p.startswith("CALLERS_FILE: ") for p in found)


def test_duplicate_rows_are_among_the_warnings_make_check_prints(tmp_path):
    directory = tmp_path / "callers.csv"
    directory.write_text("number,name\n+15005550101,Ada\n+15005550101,Ada again\n")
    env = {**GOOD, "PUBLIC_URL": "http://sms.example.com", "CALLERS_FILE": str(directory)}
    settings = load_settings(env, tmp_path / "k")
    assert [w.split(" ")[0] for w in settings.all_warnings] == [
        "PUBLIC_URL='http://sms.example.com'",
        "CALLERS_FILE:",
    ]
    assert (
        settings.all_warnings[1]
        == f"CALLERS_FILE: {directory}:3: duplicate of line 2 (+1500555****); keeping the first"
    )


def caller_directory(tmp_path, text):
    path = tmp_path / "callers.csv"
    path.write_text(text)
    return path


def test_a_worker_that_boots_after_a_bad_edit_serves_the_last_good_directory(
    make_app, make_phone, tmp_path, caplog
):
    directory = caller_directory(tmp_path, "number,name\n+15005550101,Ada\n")
    make_app(CALLERS_FILE=str(directory))  # the instance's first worker
    directory.write_text("number,name\n+15005550101,Ada\nnonsense,Bob\n+15005550102,\n")
    caplog.set_level("WARNING", logger="responder")
    booted = make_app(CALLERS_FILE=str(directory))  # a worker that replaces one (OOM kill, crash, SIGHUP)
    assert make_phone(booted).send("hi", "+15005550101", "+15005550199").text.split(":")[0].endswith(" Ada")
    ready = booted.test_client().get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["callers"] == 1
    assert "callers.csv:3: not a phone number" in ready.get_json()["warnings"]["caller_directory"]
    (warning,) = [r.getMessage() for r in caplog.records if "last good copy" in r.getMessage()]
    assert ":3: not a phone number" in warning and ":4: the name is empty" in warning
    assert warning.endswith("serving the last good copy (entries: 1) until it is fixed")
    metrics = booted.test_client().get("/metrics").get_data(as_text=True).splitlines()
    assert "responder_caller_directory_reload_failures_total 1.0" in metrics


def test_a_worker_on_the_last_good_copy_reads_its_numbers_for_the_instance_region(
    make_app, make_phone, tmp_path
):
    directory = caller_directory(tmp_path, "number,name\n020 7946 0018,Ada\n")
    make_app(CALLERS_FILE=str(directory), DEFAULT_REGION="GB")
    directory.write_text("number,name\n020 7946 0018,Ada\nnonsense,Bob\n")
    booted = make_app(CALLERS_FILE=str(directory), DEFAULT_REGION="GB")
    assert make_phone(booted).send("hi", "+442079460018", "+15005550199").text.split(":")[0].endswith(" Ada")


def test_a_worker_on_the_last_good_copy_does_not_read_the_unchanged_bad_file_again(make_app, clock, tmp_path):
    directory = caller_directory(tmp_path, "number,name\n+15005550101,Ada\n")
    make_app(CALLERS_FILE=str(directory))
    rewrite(directory, "number,name\nnonsense,Bob\n", clock)
    booted = make_app(CALLERS_FILE=str(directory))
    clock.advance(6)  # past the recheck interval: the next request looks at the file
    booted.test_client().get("/readyz")
    metrics = booted.test_client().get("/metrics").get_data(as_text=True).splitlines()
    assert "responder_caller_directory_reload_failures_total 1.0" in metrics  # the boot's, not a second


def test_a_new_worker_boots_from_the_newest_good_version_another_worker_loaded(
    make_app, make_phone, clock, tmp_path
):

    directory = caller_directory(tmp_path, "number,name\n+15005550101,Ada\n")
    first = make_app(CALLERS_FILE=str(directory))
    rewrite(directory, "number,name\n+15005550101,Grace\n", clock)
    clock.advance(6)
    assert make_phone(first).send("hi", "+15005550101", "+15005550199").text.split(":")[0].endswith(" Grace")
    directory.write_text("number,name\nnonsense,Bob\n")
    booted = make_app(CALLERS_FILE=str(directory))
    assert make_phone(booted).send("hi", "+15005550101", "+15005550199").text.split(":")[0].endswith(" Grace")


def test_a_deleted_directory_leaves_new_workers_on_the_last_good_copy(make_app, tmp_path):
    directory = caller_directory(tmp_path, "number,name\n+15005550101,Ada\n")
    make_app(CALLERS_FILE=str(directory))
    directory.unlink()
    ready = make_app(CALLERS_FILE=str(directory)).test_client().get("/readyz").get_json()
    assert (
        ready["callers"] == 1 and "cannot read the caller directory" in ready["warnings"]["caller_directory"]
    )


def test_the_check_at_start_up_still_refuses_a_bad_directory_after_a_good_one_was_served(make_app, tmp_path):
    directory = caller_directory(tmp_path, "number,name\n+15005550101,Ada\n")
    make_app(CALLERS_FILE=str(directory))
    directory.write_text("number,name\nnonsense,Bob\n")
    (problem,) = problems({**GOOD, "CALLERS_FILE": str(directory)}, tmp_path)
    assert problem.startswith(f"CALLERS_FILE: {directory}:2: not a phone number")


def test_a_last_good_copy_serves_only_the_file_it_was_taken_from(make_app, tmp_path):
    directory = caller_directory(tmp_path, "number,name\n+15005550101,Ada\n")
    make_app(CALLERS_FILE=str(directory))
    other = tmp_path / "other.csv"
    other.write_text("number,name\nnonsense,Bob\n")
    with pytest.raises(ConfigError, match=r"other\.csv:2: not a phone number"):
        make_app(CALLERS_FILE=str(other))


def test_the_last_good_copy_is_private_and_replaced_whole(tmp_path, monkeypatch):
    from callers import LAST_GOOD_NAME, Directory, LastGood

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    kept = LastGood.default(tmp_path / "instance")
    assert kept.path == tmp_path / "metrics" / LAST_GOOD_NAME  # the server run's own folder
    kept.save("callers.csv", Directory(text="number,name\n+15005550101,Ada\n"))
    kept.save("callers.csv", Directory(text="number,name\n+15005550101,Grace\n"))
    assert stat.S_IMODE(kept.path.stat().st_mode) == 0o600
    assert os.listdir(kept.path.parent) == [LAST_GOOD_NAME]  # no temporary file left behind
    assert kept.load("callers.csv", "US").names == {"+15005550101": "Grace"}
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert LastGood.default(tmp_path / "instance").path == tmp_path / "instance" / LAST_GOOD_NAME


def test_a_last_good_copy_that_cannot_be_written_only_warns(tmp_path, caplog):
    from callers import Directory, LastGood

    (tmp_path / "not-a-folder").write_text("")
    kept = LastGood(tmp_path / "not-a-folder" / "copy.json")
    kept.save("callers.csv", Directory(text="number,name\n+15005550101,Ada\n"))
    assert kept.load("callers.csv", "US") is None
    assert "no last good copy kept at" in caplog.text


def test_a_copied_env_example_leaves_make_run_in_development_and_serve_in_production(tmp_path):
    (tmp_path / ".env").write_text((REPO / ".env.example").read_text())  # cp .env.example .env
    environment = read_environment()
    assert "RESPONDER_ENV" not in environment  # make run then picks development, make serve production
    assert load_settings({**environment, **GOOD, "RESPONDER_ENV": ""}, tmp_path / "k").is_production


SETTINGS_ERRORS = [
    ({"SECRET_KEY": ""}, "SECRET_KEY is not set; production needs a random key of at least 32 characters shared by every instance"),
    ({"TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN is not set; production checks every webhook's X-Twilio-Signature (find the token in the Twilio Console under Account > API keys & tokens)"),
    ({"PUBLIC_URL": ""}, "PUBLIC_URL is not set; production checks signatures against the URL Twilio calls only: set it to the webhook URL in the Twilio Console without /sms (e.g. https://sms.example.com; several, comma-separated)"),
    ({"TWILIO_AUTH_TOKEN": "changeme"}, "TWILIO_AUTH_TOKEN is not a Twilio auth token (32 hexadecimal characters); copy it from the Twilio Console under Account > API keys & tokens"),
    ({"TWILIO_AUTH_TOKEN_SECONDARY": "nope"}, "TWILIO_AUTH_TOKEN_SECONDARY is not a Twilio auth token (32 hexadecimal characters); copy it from the Twilio Console under Account > API keys & tokens"),
    ({"TWILIO_AUTH_TOKEN": "", "TWILIO_AUTH_TOKEN_SECONDARY": "fedcba9876543210fedcba9876543210"}, "TWILIO_AUTH_TOKEN_SECONDARY is set without TWILIO_AUTH_TOKEN; set the primary too"),
    ({"RESPONDER_ENV": "staging"}, "RESPONDER_ENV='staging': use 'development' or 'production'"),
    ({"TRUSTED_PROXIES": "one"}, "TRUSTED_PROXIES='one' is not a whole number; the number of reverse proxies in front of the service"),
    ({"TRUSTED_PROXIES": "11"}, "TRUSTED_PROXIES=11 is out of range 0..10; the number of reverse proxies in front of the service"),
    ({"CONVERSATION_IDLE_SECONDS": "14401"}, "CONVERSATION_IDLE_SECONDS=14401 is out of range 1..14400; Twilio keeps a conversation's cookie for at most 4 hours (14400 s)"),
    ({"PORT": "0"}, "PORT=0 is out of range 1..65535; a TCP port"),
    ({"DEFAULT_REGION": "ZZ"}, "DEFAULT_REGION='ZZ' is not a two-letter region code such as US or GB"),
    ({"GREETING_TEMPLATE": "Hi {nmae}"}, "GREETING_TEMPLATE: unknown placeholder(s) nmae; allowed: {count}, {name}, {to}"),
    ({"GREETING_TEMPLATE": "Hi {nmae} {x}"}, "GREETING_TEMPLATE: unknown placeholder(s) nmae, x; allowed: {count}, {name}, {to}"),
    ({"COUNT_REPLY_TEMPLATE": "#{count"}, "COUNT_REPLY_TEMPLATE: bad braces (expected '}' before end of string); write {{ and }} for literal braces"),
    ({"GREETING_TEMPLATE": "{count:>9}"}, "GREETING_TEMPLATE: placeholders take no format spec or conversion; use plain {name}, {count} and {to}"),
    ({"GREETING_TEMPLATE": "   "}, "GREETING_TEMPLATE: is empty; a reply must say something"),
    ({"GREETING_TEMPLATE": "x" * 1601}, "GREETING_TEMPLATE: can render 1601 characters with a long name; Twilio's limit is 1600"),
    ({"HELP_TEXT": "x" * 1601}, "HELP_TEXT is longer than Twilio's 1600-character limit"),
    ({"PUBLIC_URL": "ftp://x"}, "PUBLIC_URL='ftp://x': give the base URL Twilio calls, e.g. https://sms.example.com"),
    ({"PUBLIC_URL": "https://sms.example.com/?a=1"}, "PUBLIC_URL='https://sms.example.com/?a=1': give the base URL Twilio calls, e.g. https://sms.example.com"),
    ({"SECRET_KEY": "c0ffee11d00d22beef33cafe44f00d55", "TWILIO_AUTH_TOKEN": "c0ffee11d00d22beef33cafe44f00d55"}, "SECRET_KEY is the Twilio auth token; the cookie key must be a secret of its own"),
    ({"SECRET_KEY": "abcdefghabcdefghabcdefghabcdefgh"}, "SECRET_KEY is a well-known or guessable value (repeats, runs or sample words); generate one with python -c 'import secrets; print(secrets.token_urlsafe(48))'"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), SETTINGS_ERRORS)
def test_each_settings_error_reads_exactly(tmp_path, change, message):
    assert problems({**GOOD, **change}, tmp_path) == [message]


def test_a_template_a_long_name_keeps_within_the_limit_is_accepted(tmp_path):
    template = "x" * (1600 - 100) + "{name}"  # 1,500 + a 100-character name = 1,600
    assert load_settings({**GOOD, "GREETING_TEMPLATE": template}, tmp_path / "k").greeting == template
    (problem,) = problems({**GOOD, "GREETING_TEMPLATE": "x" + template}, tmp_path)
    assert problem == "GREETING_TEMPLATE: can render 1601 characters with a long name; Twilio's limit is 1600"


def test_the_development_warning_reads_exactly(tmp_path):
    settings = load_settings({"RESPONDER_ENV": "development"}, tmp_path / "k")
    assert settings.warnings == (
        "TWILIO_AUTH_TOKEN is not set: webhook signatures are NOT checked. Anyone who can reach this server "
        "can post to /sms. Development only.",
    )


def test_the_config_error_lists_its_problems_one_per_line(tmp_path):
    from config import ConfigError

    assert str(ConfigError(["a", "b"])) == "a\nb"


def test_the_instance_path_override_keeps_the_development_key_there(make_app, tmp_path):
    app = make_app(
        RESPONDER_ENV="development",
        TWILIO_AUTH_TOKEN="",
        PUBLIC_URL="",
        SECRET_KEY="",
        instance_path=str(tmp_path / "elsewhere"),
    )
    assert Path(app.instance_path) == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere" / "dev-secret-key").read_text().strip() == app.secret_key


def test_the_dot_env_in_the_working_directory_is_read_by_default(tmp_path):
    from config import read_environment

    (tmp_path / ".env").write_text("GREETING_TEMPLATE=From the file\n")  # the tests run in tmp_path
    assert read_environment({})["GREETING_TEMPLATE"] == "From the file"


def test_development_with_a_token_warns_nothing(tmp_path):
    from config import load_settings

    settings = load_settings({"RESPONDER_ENV": "development", "TWILIO_AUTH_TOKEN": TOKEN}, tmp_path / "k")
    assert settings.warnings == () and settings.checks_signatures


def test_a_help_text_of_exactly_1600_characters_is_accepted(tmp_path):
    from config import load_settings

    assert len(load_settings({**GOOD, "HELP_TEXT": "h" * 1600}, tmp_path / "k").help_text) == 1600


def test_a_secondary_token_without_any_primary_variable_is_refused(tmp_path):
    env = {k: v for k, v in GOOD.items() if k != "TWILIO_AUTH_TOKEN"} | {"TWILIO_AUTH_TOKEN_SECONDARY": TOKEN}
    assert "TWILIO_AUTH_TOKEN_SECONDARY is set without TWILIO_AUTH_TOKEN; set the primary too" in problems(
        env, tmp_path
    )
