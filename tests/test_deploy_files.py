"""The deployment files work as written: .env.example, Procfile, Dockerfile, compose.yaml, the systemd unit.

No container daemon or systemd runs here, so each file's start command and environment are read from it
and run against the project's venv, as the platform would run them; then /healthz must answer.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values
from helpers import GREETING, REPO, count_reply, production_settings, require

import serve
from config import VARIABLES
from devtools.servers import free_port, running
from devtools.simulator import HttpTransport, Simulator

pytestmark = pytest.mark.server

VENV_BIN = str(Path(sys.executable).parent)
FILLED = {
    "SECRET_KEY": "deploy-test-key-7c1e9a3f5b2d8e4a6c0f9b1d3e5a7c9f",
    "TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef",
    "PUBLIC_URL": "https://sms.example.com",
}


def filled_env_file(tmp_path: Path) -> Path:
    """Copy .env.example and fill in the three values it marks as required."""
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    for name, value in FILLED.items():
        text, n = re.subn(rf"^{name}=$", f"{name}={value}", text, flags=re.M)
        assert n == 1, f".env.example has no empty {name}= line"
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment with the venv first on PATH, as the platform's image or host would have."""
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8", **extra}


def healthy_under(command: list[str], env: dict, cwd: Path, port: int, tmp_path: Path) -> None:
    with running(command, env, cwd, tmp_path / "server.log", port) as server:
        assert server.get("/healthz") == 200


def test_env_example_lists_every_setting_and_marks_the_required_ones():
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    names = set(dotenv_values(REPO / ".env.example")) | set(re.findall(r"^# ([A-Z_]+)=", text, re.M))
    assert set(VARIABLES) | {"WEB_CONCURRENCY", "SERVER_NAME"} <= names
    # Active lines must not override what a container image sets (docker run --env-file .env).
    assert not {"HOST", "PORT", "WEB_CONCURRENCY"} & set(dotenv_values(REPO / ".env.example"))
    for name in FILLED:
        assert re.search(rf"# REQUIRED \(production\).*\n(#.*\n)*{name}=\n", text), name


def test_env_example_with_three_values_filled_is_enough_for_check_and_serve(tmp_path):
    filled_env_file(tmp_path)
    check = subprocess.run(
        [sys.executable, str(REPO / "serve.py"), "check"], cwd=tmp_path, env=base_env(), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "settings OK (production)" in check.stdout and "https://sms.example.com/sms" in check.stdout
    port = free_port()
    healthy_under(
        [sys.executable, str(REPO / "serve.py"), "serve"], base_env(PORT=str(port)), tmp_path, port, tmp_path
    )


def test_procfile_web_runs_the_production_server_on_port_like_a_paas(tmp_path):
    (line,) = [x for x in (REPO / "Procfile").read_text().splitlines() if x.startswith("web:")]
    command = line.removeprefix("web:").strip()
    assert "0.0.0.0" in command and "gunicorn -c gunicorn.conf.py" in command
    port = free_port()
    env = base_env(PORT=str(port), **production_settings())
    healthy_under(["bash", "-c", command], env, REPO, port, tmp_path)


def dockerfile() -> tuple[dict[str, str], list[str], list[str], str]:
    """Return the Dockerfile's ENV, CMD, HEALTHCHECK command and text."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", text, re.M):
        env.update(pair.split("=", 1) for pair in shlex.split(line))
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.M)
    (health,) = re.findall(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, re.M)
    return env, json.loads(cmd), json.loads(health), text


def test_dockerfile_is_slim_non_root_layered_and_checks_health(tmp_path):
    env, cmd, health, text = dockerfile()
    assert re.search(r"^FROM python:3\.\d+-slim$", text, re.M)
    assert re.search(r"^USER (?!root)\w+$", text, re.M)
    assert text.index("COPY requirements.txt") < text.index("RUN pip install") < text.index("COPY . .")
    assert env["HOST"] == "0.0.0.0" and env["RESPONDER_ENV"] == "production"
    assert cmd == ["gunicorn", "-c", "gunicorn.conf.py"]
    # docker run --env-file .env: the image's ENV first, then the filled .env.example over it.
    dotenv = {k: v for k, v in dotenv_values(filled_env_file(tmp_path)).items() if v}
    container = {**env, **dotenv}
    assert (
        container["HOST"] == "0.0.0.0" and container["PORT"] == "8000"
    )  # still reachable on the published port
    port = free_port()
    metrics = tmp_path / "metrics"
    run_env = base_env(**{**container, "PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(metrics)})
    with running(cmd, run_env, REPO, tmp_path / "server.log", port) as server:
        assert server.get("/healthz") == 200
        probe = subprocess.run(health, env=run_env, cwd=REPO, timeout=10, check=False)
        assert probe.returncode == 0


def test_compose_runs_two_instances_behind_the_nginx_template(tmp_path):
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    apps = [name for name, s in services.items() if s.get("build") == "."]
    assert len(apps) == 2
    env, cmd, _, _ = dockerfile()
    dotenv = dotenv_values(filled_env_file(tmp_path))
    for name in apps:
        service = services[name]
        assert service["env_file"] == ".env"
        port = free_port()
        # Docker's precedence: the image's ENV, then env_file, then environment.
        run_env = base_env(**{**env, **{k: v for k, v in dotenv.items() if v}, **service["environment"]})
        assert run_env["TRUSTED_PROXIES"] == "1" and run_env["HOST"] == "0.0.0.0"  # nginx must reach it
        run_env |= {"PORT": str(port), "HOST": "127.0.0.1", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / name)}
        healthy_under(cmd, run_env, REPO, port, tmp_path)

    # nginx's command fills every placeholder of deploy/nginx.conf and names both instances.
    assert services["nginx"]["environment"]["SERVER_NAME"].startswith("${SERVER_NAME:-")
    script = services["nginx"]["command"][-1].replace("$$", "$")
    render = script.split("&& exec nginx")[0]
    render = render.replace("/etc/nginx/responder.conf.template", str(REPO / "deploy" / "nginx.conf"))
    render = render.replace("/var/lib/responder-nginx", str(tmp_path / "nginx"))
    subprocess.run(
        ["sh", "-c", render], env={"SERVER_NAME": "sms.example.com", "PATH": "/usr/bin:/bin"}, check=True
    )
    conf = (tmp_path / "nginx" / "nginx.conf").read_text()
    assert not re.findall(r"@[A-Z_]+@", conf)
    assert all(f"server {name}:8000" in conf for name in apps)


def unit_options(unit: str) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for key, value in re.findall(r"^(\w+)=(.*)$", unit, re.M):
        options.setdefault(key, []).append(value)
    return options


def test_systemd_unit_installed_as_its_comment_says_verifies_and_serves_from_a_runtime_only_venv(tmp_path):
    unit = (REPO / "deploy" / "sms-responder.service").read_text(encoding="utf-8")
    options = unit_options(unit)
    for sandboxing in [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "CapabilityBoundingSet",
    ]:
        assert sandboxing in options
    assert options["User"] != ["root"] and int(options["LimitNOFILE"][0]) >= 65536

    # The install lines, as written, into a root of the test's own (useradd and systemctl need a real system).
    root = tmp_path / "root"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    lines = [
        line.removeprefix("#   ").replace("sudo ", "").split("  #")[0]  # as root, which the tests are
        for line in unit.splitlines()
        if line.startswith("#   sudo ")
    ]
    for line in lines:
        if line.startswith(("useradd ", "systemctl ")):
            continue
        line = re.sub(r"(?<![\w.])/(opt|etc)/", lambda m: f"{root}/{m.group(1)}/", line)
        done = subprocess.run(["bash", "-c", line], cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
    pip = [str(root / "opt/sms-responder/.venv/bin/python"), "-m", "pip", "--disable-pip-version-check"]
    assert subprocess.run([*pip, "check"], capture_output=True, timeout=120).returncode == 0
    installed = subprocess.run([*pip, "list"], capture_output=True, text=True, check=True).stdout.lower()
    assert not {"pytest", "ruff", "hypothesis", "mutmut", "time-machine"} & {
        line.split()[0] for line in installed.splitlines()[2:]
    }

    # systemd's own check of the unit, inside that root (it needs the system's units beside it).
    analyze = require("systemd-analyze", "apt-get install systemd")
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    verify = subprocess.run(
        [analyze, "verify", f"--root={root}", "/etc/systemd/system/sms-responder.service"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr

    # ExecStart with the filled EnvironmentFile, from the venv that holds the runtime requirements alone.
    env_file = root / "etc" / "sms-responder.env"
    env_file.write_text(filled_env_file(tmp_path).read_text(encoding="utf-8"), encoding="utf-8")
    (exec_start,) = options["ExecStart"]
    command = [part.replace("/opt/", f"{root}/opt/") for part in shlex.split(exec_start)]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    env |= {k: v for k, v in dotenv_values(env_file).items() if v}
    for assignment in options.get("Environment", []):
        key, value = assignment.split("=", 1)
        env[key] = value.replace("/run/sms-responder", str(tmp_path / "run"))
    port = free_port()
    env["PORT"] = str(port)
    with running(command, env, root / "opt/sms-responder", tmp_path / "server.log", port):
        phone = Simulator(
            HttpTransport(f"http://127.0.0.1:{port}"),
            FILLED["PUBLIC_URL"] + "/sms",
            FILLED["TWILIO_AUTH_TOKEN"],
        )
        assert phone.send("hello", "+15005550101", "+15005550199").text == GREETING
        assert phone.send("again", "+15005550101", "+15005550199").text == count_reply(2)
    assert os.path.isdir(tmp_path / "run" / "metrics")


def cgroup_tree(root: Path, membership: str, limits: dict[str, str]) -> Path:
    """Write a cgroup mount's limit files under `root` and a /proc/self/cgroup; return the latter."""
    for path, limit in limits.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(limit + "\n")
    (root / "self-cgroup").write_text(membership)
    return root / "self-cgroup"


@pytest.mark.parametrize(
    ("membership", "limits", "expected"),
    [
        ("0::/kubepods/pod1/c1\n", {"kubepods/pod1/c1/memory.max": "268435456"}, 256 * 2**20),
        ("0::/user.slice/a.service\n", {"user.slice/a.service/memory.max": "max"}, None),
        ("0::/a/b\n", {"a/memory.max": "134217728", "a/b/memory.max": "max"}, 128 * 2**20),
        (
            "5:cpu:/\n4:memory:/docker/c1\n0::/\n",
            {
                "memory/docker/c1/memory.limit_in_bytes": "268435456",
                "memory/memory.limit_in_bytes": "9223372036854771712",
            },
            256 * 2**20,
        ),
        ("4:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712"}, None),
    ],
    ids=["v2 container", "v2 no limit", "v2 parent's limit", "v1 container", "v1 no limit"],
)
def test_the_memory_limit_is_read_from_the_process_cgroup_and_its_parents(
    tmp_path, membership, limits, expected
):
    membership_file = cgroup_tree(tmp_path, membership, limits)
    assert serve.memory_limit(tmp_path, membership_file) == expected


def test_worker_connections_fit_three_quarters_of_the_memory_limit_and_the_unit_files_them():
    assert serve.connections_per_worker(None, 2) == serve.MOST_CONNECTIONS
    assert serve.connections_per_worker(256 * 2**20, 2) == 1_228
    assert serve.connections_per_worker(512 * 2**20, 2) == 6_144
    assert serve.connections_per_worker(256 * 2**20, 1) == 4_915
    assert serve.connections_per_worker(128 * 2**20, 2) == serve.FEWEST_CONNECTIONS  # nothing fits: a floor
    unit = unit_options((REPO / "deploy" / "sms-responder.service").read_text(encoding="utf-8"))
    assert int(unit["LimitNOFILE"][0]) >= 6 * serve.MOST_CONNECTIONS  # the unit's comment: 6 workers
