"""The image built from the Dockerfile, run as an operator runs it: hardened, probed, conversed with, stopped."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import (
    ALICE,
    HARDENED,
    REPO,
    SERVICE,
    TOKEN,
    HalfSentWebhook,
    IdleConnection,
    gunicorn_setting,
)

from devtools.servers import http_status
from devtools.simulator import HttpTransport, Simulator

pytestmark = [pytest.mark.server, pytest.mark.container]


def phone_for(container) -> Simulator:
    return Simulator(HttpTransport(), f"http://127.0.0.1:{container.port}/sms", token=TOKEN)


def test_the_image_ships_the_service_modules_and_nothing_else(podman, image):
    listing = podman.run("run", "--rm", image, "ls", "-A", "/app").stdout.split()
    modules = {path.name for path in REPO.glob("*.py")}
    assert set(listing) == modules | {"requirements.txt"}
    for absent in ("tests", "bench", "devtools", ".git", ".venv", ".env", "instance", "Dockerfile"):
        assert absent not in listing


def test_a_hardened_container_answers_probes_and_keeps_a_conversation(start_container):
    container = start_container(*HARDENED)
    assert http_status(container.port, "/healthz") == 200
    assert http_status(container.port, "/readyz") == 200
    phone = phone_for(container)
    assert phone.send("hello", ALICE, SERVICE).text.startswith("Hi Friend, welcome!")
    assert phone.send("again", ALICE, SERVICE).text.endswith("message #2 in our conversation.")
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
    idle = IdleConnection(container.port)  # a proxy's pooled connection must not hold the worker
    in_flight = HalfSentWebhook(container.port, phone_for(container), ALICE)
    time.sleep(0.3)
    outcome = {}
    stopper = threading.Thread(target=lambda: outcome.update(stop=container.stop(timeout=10)))
    stopper.start()
    time.sleep(1.0)  # SIGTERM has reached the server; the webhook's last bytes arrive only now
    status, text = in_flight.finish()
    idle_was_closed = idle.closed_by_server(timeout=2)
    stopper.join(30)
    seconds, exit_code = outcome["stop"]
    print(f"\npodman stop with an idle keep-alive connection and a webhook in flight: {seconds:.1f} s")
    assert (status, text) == (200, "Hi Friend, welcome! Text RESET any time to start over.")
    assert idle_was_closed, "the idle connection was left open: it holds the worker until graceful_timeout"
    assert exit_code == 0 and seconds < min(8, gunicorn_setting("graceful_timeout"))
