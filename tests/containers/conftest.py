"""Fixtures for the container tests: podman, the image built from the project's Dockerfile, its containers."""

from __future__ import annotations

import os
import sys

import pytest
from helpers import IMAGE, REPO, production_settings

from devtools.podman import DEBIAN_PACKAGES, Podman, base_image_of, missing_tools
from devtools.servers import free_port, http_status, wait_until


@pytest.fixture(scope="session")
def podman(tmp_path_factory) -> Podman:
    """Podman with this suite's configuration; without it the tests skip, or fail under CI."""
    missing = missing_tools()
    if missing:
        why = f"container tests need {', '.join(missing)}: apt-get install {DEBIAN_PACKAGES}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return Podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="session")
def image(podman) -> str:
    """Build the project's Dockerfile from the repository itself (its .dockerignore decides what ships)."""
    base = podman.ensure_base_image(base_image_of(REPO / "Dockerfile"))
    seconds = podman.build(REPO, IMAGE)
    size = podman.image_size(IMAGE) / 1e6
    print(f"\nimage {IMAGE}: built in {seconds:.0f} s, {size:.0f} MB; base image {base}", file=sys.stderr)
    return IMAGE


@pytest.fixture
def start_container(podman, image):
    """Start the image with production settings on a free port of 127.0.0.1; remove it afterwards."""
    started = []

    def start(*options: str, **env: str):
        port = free_port()
        env = {"HOST": "127.0.0.1", "PORT": str(port), **env}  # the host's network: its loopback only
        settings = production_settings(f"http://127.0.0.1:{port}", **{k: v for k, v in env.items() if v})
        container = podman.start(image, settings, *options, port=port)
        started.append(container)
        wait_until(lambda: answers(port) or not container.is_running(), 60, "the container's /healthz")
        assert container.is_running(), f"the container exited:\n{container.logs()}"
        return container

    yield start
    for container in started:
        container.remove()


def answers(port: int) -> bool:
    try:
        return http_status(port, "/healthz", timeout=1.0) == 200
    except OSError:
        return False
