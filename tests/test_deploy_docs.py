"""docs/deploy.md's commands run as written, with only its placeholders and host paths filled in."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest
from helpers import (
    ALICE,
    GREETING,
    HARDENED,
    REPO,
    SECRET,
    SERVICE,
    TOKEN,
    count_reply,
    require,
    shell_blocks,
)

from devtools.servers import Server, free_port
from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server

PAGE = "docs/deploy.md"


def filled(block: str, values: dict[str, str]) -> str:
    """Replace each placeholder of a block with its value; every placeholder must be there."""
    for placeholder, value in values.items():
        assert placeholder in block, f"{PAGE} no longer says {placeholder!r}"
        block = block.replace(placeholder, value)
    return block


def test_the_one_instance_commands_serve_the_production_app(tmp_path):
    """Run the exports and `make serve` from the page; a signed webhook for PUBLIC_URL gets the greeting."""
    (block,) = shell_blocks(PAGE, "## One instance")
    port = free_port()
    script = filled(
        block, {"'<that key>'": SECRET, "'<your auth token>'": TOKEN, "PORT=8000": f"PORT={port}"}
    )
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    server = Server(["bash", "-ec", script], env, port, tmp_path / "server.log", REPO)
    try:
        server.start()
        phone = Simulator(
            HttpTransport(f"http://127.0.0.1:{port}"), "https://sms.example.com/sms", token=TOKEN
        )
        assert phone.send("hello", ALICE, SERVICE).text == GREETING
        assert phone.send("again", ALICE, SERVICE).text == count_reply(2)
        assert Simulator(phone.transport, phone.url, token="f" * 32).send("hi", ALICE, SERVICE).status == 403
    finally:
        server.stop()


def test_the_nginx_commands_render_a_tls_configuration_that_nginx_accepts(tmp_path):
    """Fill deploy/nginx.conf with the page's sed line and check it with the page's `nginx -t`."""
    require("nginx", "apt-get install nginx-light")
    require("openssl", "apt-get install openssl")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sms.example.com",
         "-keyout", str(tmp_path / "sms.key"), "-out", str(tmp_path / "sms.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (block,) = shell_blocks(PAGE, "## Several instances behind nginx")
    *render_and_check, start = block.replace("\\\n", "").strip().splitlines()
    assert start.startswith("nginx -p ") and "-t" not in shlex.split(start)
    prefix = tmp_path / "prefix"
    script = filled(
        "\n".join(render_and_check),
        {
            "/var/lib/responder-nginx": str(prefix),
            "/etc/ssl/": f"{tmp_path}/",
            "443 ssl": f"127.0.0.1:{free_port()} ssl",
        },
    )
    result = subprocess.run(["bash", "-ec", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    rendered = (prefix / "nginx.conf").read_text(encoding="utf-8")
    assert not re.findall(r"@[A-Z_]+@", rendered)
    assert "server 10.0.0.12:8000 max_fails=1 fail_timeout=5s;" in rendered


def test_the_docker_run_line_hardens_the_container_as_the_image_tests_run_it():
    """Run the image with exactly the flags tests/containers starts it with (there through podman)."""
    (block,) = shell_blocks(PAGE, "## Containers")
    build, run = [shlex.split(line) for line in block.replace("\\\n", " ").strip().splitlines()]
    assert build == ["docker", "build", "-t", "sms-responder", "."]
    assert run[:6] == ["docker", "run", "--env-file", ".env", "-p", "8000:8000"]
    assert tuple(run[6:-1]) == HARDENED and run[-1] == "sms-responder"
