"""Podman for the tests: the Dockerfile's base image made from Debian packages, the image, its containers.

These machines reach package registries but no image registry. So the base image the Dockerfile names
(`python:3.11-slim`) is made here once: a Debian bookworm root file system (mmdebstrap) with a venv where
the official image keeps its Python (`/usr/local`, so `python` and `pip` are on PATH as there) and this
machine's CA bundle (the package registry is reached through it). It stays in podman's image store with a
label saying so, and is reused by later runs. An image of that name that podman already has (a real one,
pulled on a machine that can) is used as it is.

Podman runs with Debian's runc (crun fails on this kernel's cgroups), cgroupfs, no default ulimits (a
containers.conf of our own, through CONTAINERS_CONF) and the host's network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = ("podman", "runc", "mmdebstrap", "catatonit", "slirp4netns")
DEBIAN_PACKAGES = "podman buildah runc mmdebstrap catatonit slirp4netns uidmap"
DEBIAN_SUITE, DEBIAN_PYTHON = "bookworm", "3.11"
MADE_HERE_LABEL = "org.sms-responder.made-from"
CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
"""
BASE_CONTAINERFILE = """\
FROM {rootfs}
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /usr/local && /usr/local/bin/python -m pip --version
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt
LABEL {label}="debian-{suite}"
"""
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class PodmanError(RuntimeError):
    """A podman command failed; the message holds its output."""


def missing_tools() -> list[str]:
    """Return the commands the container tests need that this machine lacks."""
    return [tool for tool in TOOLS if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()]


def base_image_of(dockerfile: Path) -> str:
    """Return the fully qualified name of the Dockerfile's FROM image."""
    (name,) = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(encoding="utf-8"), re.M)
    if "/" not in name:
        name = f"docker.io/library/{name}"
    return name


@dataclass
class Podman:
    """The podman command line, with a configuration of its own written into `workdir`."""

    workdir: Path
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF, encoding="utf-8")
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def command(self, *args: str) -> list[str]:
        return ["podman", "--runtime", shutil.which("runc") or "/usr/sbin/runc", *args]

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run `podman ARGS`; raise PodmanError with its output when it fails and `check` is set."""
        result = subprocess.run(
            self.command(*args), env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise PodmanError(f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n{result.stderr}")
        return result

    def has_image(self, name: str) -> bool:
        return self.run("image", "exists", name, check=False).returncode == 0

    def ensure_base_image(self, name: str) -> str:
        """Make the image `name` from Debian packages unless podman has it; return how it was found."""
        if self.has_image(name):
            labels = json.loads(self.run("image", "inspect", "--format", "{{json .Labels}}", name).stdout)
            return "made here earlier" if MADE_HERE_LABEL in (labels or {}) else "present"
        version = name.rsplit(":", 1)[-1].split("-")[0]
        if version != DEBIAN_PYTHON:
            raise PodmanError(f"{name}: Debian {DEBIAN_SUITE} has Python {DEBIAN_PYTHON}, not {version}")
        started = time.perf_counter()
        build = self.workdir / "base"
        build.mkdir(exist_ok=True)
        rootfs_tar, rootfs = build / "rootfs.tar", f"localhost/sms-responder-test/debian-{DEBIAN_SUITE}"
        subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             DEBIAN_SUITE, str(rootfs_tar)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        self.run("import", str(rootfs_tar), rootfs, timeout=300)
        rootfs_tar.unlink()
        shutil.copy(CA_BUNDLE, build / "ca-certificates.crt")
        (build / "Containerfile").write_text(
            BASE_CONTAINERFILE.format(rootfs=rootfs, label=MADE_HERE_LABEL, suite=DEBIAN_SUITE),
            encoding="utf-8",
        )
        self.run("build", "--network", "host", "--pull=never", "-t", name, str(build), timeout=300)
        return f"made from Debian packages in {time.perf_counter() - started:.0f} s"

    def build(self, context: Path, tag: str) -> float:
        """Build `context`'s Dockerfile as `tag` (docker format keeps HEALTHCHECK); return the seconds taken."""
        started = time.perf_counter()
        self.run(
            "build", "--format", "docker", "--network", "host", "--pull=never", "-t", tag, str(context),
            timeout=900,
        )  # fmt: skip
        return time.perf_counter() - started

    def image_size(self, tag: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", tag).stdout)

    def start(self, image: str, env: dict[str, str], *options: str, port: int = 0) -> Container:
        """Start a container of `image` on the host's network, detached; `port` is where it listens."""
        name = f"sms-responder-test-{uuid.uuid4().hex[:12]}"
        env_options = [f"--env={key}={value}" for key, value in env.items()]
        self.run("run", "--detach", "--name", name, "--network", "host", *options, *env_options, image)
        return Container(self, name, port)


@dataclass
class Container:
    """One running container, by name."""

    podman: Podman
    name: str
    port: int = 0

    def inspect(self, template: str) -> str:
        return self.podman.run("inspect", "--format", template, self.name).stdout.strip()

    def is_running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def exec(self, *command: str) -> subprocess.CompletedProcess:
        return self.podman.run("exec", self.name, *command, check=False)

    def logs(self) -> str:
        result = self.podman.run("logs", self.name, check=False)
        return result.stdout + result.stderr

    def stop(self, timeout: int = 10) -> tuple[float, int]:
        """`podman stop` (SIGTERM, then SIGKILL after `timeout` s); return (seconds taken, exit code)."""
        started = time.perf_counter()
        self.podman.run("stop", "--time", str(timeout), self.name, timeout=timeout + 30)
        return time.perf_counter() - started, int(self.inspect("{{.State.ExitCode}}"))

    def remove(self) -> None:
        self.podman.run("rm", "--force", self.name, check=False)
