"""The image built from the Dockerfile, run as an operator runs it: hardened, probed, conversed with, stopped."""

from __future__ import annotations

import pytest
from helpers import (
    ALICE,
    GREETING,
    HARDENED,
    REPO,
    SERVICE,
    count_reply,
    gunicorn_setting,
    phone_at,
    stop_during_webhook,
)

from devtools.servers import http_status
from devtools.simulator import HttpTransport, Simulator

pytestmark = [pytest.mark.server, pytest.mark.container]


def test_the_image_ships_the_service_modules_and_nothing_else(podman, image):
    listing = podman.run("run", "--rm", image, "ls", "-A", "/app").stdout.split()
    modules = {path.name for path in REPO.glob("*.py")}
    assert set(listing) == modules | {"requirements.txt", "conversations"}
    shipped = podman.run("run", "--rm", image, "ls", "-A", "/app/conversations").stdout.split()
    assert set(shipped) == {path.name for path in (REPO / "conversations").glob("*.py")}  # not their tests
    for absent in ("tests", "bench", "devtools", ".git", ".venv", ".env", "instance", "Dockerfile"):
        assert absent not in listing


def test_a_hardened_container_answers_probes_and_keeps_a_conversation(start_container):
    container = start_container(*HARDENED)
    assert http_status(container.port, "/healthz") == 200
    assert http_status(container.port, "/readyz") == 200
    phone = phone_at(container.port)
    assert phone.send("hello", ALICE, SERVICE).text == GREETING
    assert phone.send("again", ALICE, SERVICE).text == count_reply(2)
    forged = Simulator(HttpTransport(), phone.url, token="f" * 32)
    assert forged.send("hello", ALICE, SERVICE).status == 403


def test_the_server_runs_as_a_non_root_user_without_capabilities(start_container):
    container = start_container(*HARDENED)
    status = container.exec("cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uids) == {"10001"}
    effective = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))
    assert int(effective, 16) == 0
    assert "NoNewPrivs:\t1" in status


def test_the_images_own_healthcheck_passes(start_container, podman):
    container = start_container(*HARDENED)
    assert container.inspect("{{.Config.Healthcheck.Test}}").startswith("[CMD python")
    assert podman.run("healthcheck", "run", container.name, check=False).returncode == 0


def test_without_production_settings_the_container_exits_naming_each_missing_setting(podman, image):
    result = podman.run("run", "--rm", *HARDENED, image, check=False, timeout=60)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for name in ("SECRET_KEY", "TWILIO_AUTH_TOKEN", "PUBLIC_URL"):
        assert f"{name} is not set" in output
    assert "Traceback" not in output


def test_podman_stop_answers_the_webhook_in_flight_and_exits_0_within_8_seconds(start_container):
    container = start_container(*HARDENED)
    shutdown = stop_during_webhook(
        container.port, phone_at(container.port), lambda: container.stop(timeout=10)
    )
    assert shutdown.in_flight == (200, GREETING)
    assert shutdown.idle_closed_at_once, "an idle connection held the worker until graceful_timeout"
    assert shutdown.exit_code == 0 and shutdown.seconds < min(8, gunicorn_setting("graceful_timeout"))


def test_on_cloud_run_terms_it_listens_on_0000_at_port_and_stops_within_10_seconds(start_container):
    container = start_container(HOST="", K_SERVICE="sms-responder")  # Cloud Run sets PORT, not HOST
    assert f"production server on http://0.0.0.0:{container.port}," in container.logs()
    assert phone_at(container.port).send("hello", ALICE, SERVICE).text == GREETING
    seconds, exit_code = container.stop(timeout=10)
    assert exit_code == 0 and seconds < 10


def test_the_image_runs_a_conversation_from_its_conversations_folder(start_container):
    container = start_container(*HARDENED, CONVERSATION="conversations.survey:step")
    phone = phone_at(container.port)
    assert phone.send("hi", ALICE, SERVICE).text.endswith("What is your name?")
    assert phone.send("Ada", ALICE, SERVICE).text == "Thanks, Ada! What is your ZIP code?"
    assert phone.send("94103", ALICE, SERVICE).text.startswith("All done, Ada: ZIP 94103.")
