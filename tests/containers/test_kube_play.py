"""The Kubernetes Deployment's pod, run by `podman kube play` from the kustomize render, keeps a conversation."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
import yaml
from helpers import ALICE, REPO, SECRET, SERVICE, TOKEN, require

from devtools.servers import free_port, http_status, wait_until
from devtools.simulator import HttpTransport, Simulator

pytestmark = [pytest.mark.server, pytest.mark.container]


def rendered_base() -> list[dict]:
    """Return the objects `kubectl kustomize deploy/kubernetes` renders."""
    kubectl = require("kubectl", "kubectl >= 1.27 (its built-in kustomize renders the base)")
    render = subprocess.run(
        [kubectl, "kustomize", str(REPO / "deploy" / "kubernetes")],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return list(yaml.safe_load_all(render.stdout))


def playable(objects: list[dict], port: int) -> list[dict]:
    """Keep the ConfigMap and the Deployment, the pod's port published on 127.0.0.1:port (Twilio's URL)."""
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    config_map["data"]["PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "sms-responder:0.2.0"
    (http,) = container["ports"]
    http |= {"hostPort": port, "hostIP": "127.0.0.1"}
    deployment["spec"]["replicas"] = 1  # podman plays every replica as a pod of its own: one host port
    return [config_map, deployment]


@pytest.fixture
def secret(podman, tmp_path):
    """The Secret the Deployment reads, made the way podman 4.3 reads one: a JSON file of base64 values."""
    values = {"SECRET_KEY": SECRET, "TWILIO_AUTH_TOKEN": TOKEN}
    path = tmp_path / "secret.json"
    path.write_text(json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in values.items()}))
    podman.run("secret", "rm", "sms-responder", check=False)
    podman.run("secret", "create", "sms-responder", str(path))
    yield
    podman.run("secret", "rm", "sms-responder", check=False)


def test_the_deployments_pod_runs_under_podman_kube_play_and_keeps_a_conversation(
    podman, image, secret, tmp_path
):
    port = free_port()
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump_all(playable(rendered_base(), port)))
    try:
        podman.run("kube", "play", "--network", "slirp4netns", "--replace", str(manifest), timeout=120)
        wait_until(lambda: answers(port), 60, "the pod's /readyz")
        phone = Simulator(HttpTransport(), f"http://127.0.0.1:{port}/sms", token=TOKEN)
        assert phone.send("hello", ALICE, SERVICE).text.startswith("Hi Friend, welcome!")
        assert phone.send("again", ALICE, SERVICE).text.endswith("message #2 in our conversation.")
        (played,) = json.loads(podman.run("inspect", "sms-responder-pod-0-sms-responder").stdout)
        assert played["State"]["Running"] and played["Config"]["User"] == "10001:10001"
        assert played["HostConfig"]["ReadonlyRootfs"] is True
        assert played["EffectiveCaps"] in (None, [])
    finally:
        podman.run("kube", "down", str(manifest), check=False, timeout=60)


def answers(port: int) -> bool:
    try:
        return http_status(port, "/readyz", timeout=1.0) == 200
    except OSError:
        return False
