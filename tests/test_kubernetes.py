"""The Kubernetes base (deploy/kubernetes) is valid and says what the code, the Dockerfile and gunicorn say.

No cluster runs here: every object is validated strictly against the Kubernetes schemas that
kubernetes-validate ships (unknown fields fail, as `kubectl apply --validate=strict` would), the kustomize
render too, and each value that mirrors the code (settings, routes, port, user, timeouts) is read from
the code and compared.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helpers import TOKEN, gunicorn_setting, manifest_memory_limit, require, shell_blocks

import serve
from config import VARIABLES, ConfigError, load_settings

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "deploy" / "kubernetes"
INGRESS_COMPONENT = BASE / "ingress"
# The oldest Kubernetes the base is written for and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.31", "1.37")
NOT_OBJECTS = {"kustomization.yaml", "prometheus-scrape.yaml"}
SERVER_VARIABLES = {"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"}  # read by the server, not the app
SECRET_NAMES = {"SECRET_KEY", "SECRET_KEY_FALLBACKS", "TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_SECONDARY"}
OPTIONAL_SECRETS = {"SECRET_KEY_FALLBACKS", "TWILIO_AUTH_TOKEN_SECONDARY"}
SHUTDOWN_MARGIN_SECONDS = 5  # the gunicorn master's own exit after its workers'

# The HTTPRoute fields of Gateway API v1 (gateway.networking.k8s.io/v1) that this base may use, with the
# CRD's types, enums, limits and required fields: kubernetes-validate has no schema for a CRD kind.
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def closed(required: list[str], **properties: dict) -> dict:
    """A JSON schema object that allows only `properties`."""
    return {"type": "object", "additionalProperties": False, "required": required, "properties": properties}


def array(items: dict, max_items: int, min_items: int = 0) -> dict:
    return {"type": "array", "items": items, "maxItems": max_items, "minItems": min_items}


NAME = {"type": "string", "minLength": 1, "maxLength": 253}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
PARENT_REFERENCE = closed(
    ["name"],
    group={"type": "string"},
    kind={"type": "string"},
    namespace={"type": "string", "minLength": 1, "maxLength": 63},
    name=NAME,
    sectionName=NAME,
    port=PORT,
)
PATH_MATCH = closed(
    [],
    type={"enum": ["Exact", "PathPrefix", "RegularExpression"]},
    value={"type": "string", "pattern": "^/", "maxLength": 1024},
)
BACKEND_REFERENCE = closed(
    ["name"],
    group={"type": "string"},
    kind={"type": "string"},
    name=NAME,
    namespace={"type": "string"},
    port=PORT,
    weight={"type": "integer", "minimum": 0, "maximum": 1_000_000},
)
ROUTE_RULE = closed(
    [],
    name={"type": "string"},
    matches=array(closed([], path=PATH_MATCH, method={"enum": HTTP_METHODS}), 64),
    backendRefs=array(BACKEND_REFERENCE, 16),
)
HTTP_ROUTE = closed(
    ["apiVersion", "kind", "metadata", "spec"],
    apiVersion={"const": "gateway.networking.k8s.io/v1"},
    kind={"const": "HTTPRoute"},
    metadata={"type": "object"},
    spec=closed(
        [],
        parentRefs=array(PARENT_REFERENCE, 32, min_items=1),
        hostnames=array({"type": "string", "pattern": HOSTNAME}, 16),
        rules=array(ROUTE_RULE, 16, min_items=1),
    ),
)


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifest_files() -> list[Path]:
    return sorted(p for p in BASE.rglob("*.yaml") if p.name not in NOT_OBJECTS)


def manifest(name: str) -> dict:
    (doc,) = documents(BASE / name)
    return doc


def validate_strictly(doc: dict, version: str) -> None:
    """Validate one built-in object against kubernetes-validate's strict schema for `version`."""
    assert kubernetes_validate.validate(doc, version, strict=True) == version


def validate_object(doc: dict, version: str) -> None:
    """Validate strictly; an HTTPRoute (a CRD kind) against its Gateway API fields, its metadata strictly."""
    if doc["kind"] == "HTTPRoute":
        jsonschema.validate(doc, HTTP_ROUTE)
        validate_strictly({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]}, version)
    else:
        validate_strictly(doc, version)


def pod_spec() -> dict:
    return manifest("deployment.yaml")["spec"]["template"]["spec"]


def container() -> dict:
    (only,) = pod_spec()["containers"]
    return only


def dockerfile_env() -> dict[str, str]:
    """The variables the Dockerfile's ENV lines set."""
    values = {}
    for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("ENV "):
            values.update(word.split("=", 1) for word in shlex.split(line[4:]))
    return values


def kustomize(path: Path) -> list[dict]:
    """Render a kustomization with kubectl's built-in kustomize."""
    kubectl = require("kubectl", "kubectl >= 1.27 (its built-in kustomize renders the base)")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kinds(docs: list[dict]) -> set[tuple[str, str]]:
    return {(doc["kind"], doc["metadata"]["name"]) for doc in docs}


def public_paths(doc: dict) -> list[tuple[str, str]]:
    """The (match type, path) pairs an HTTPRoute or Ingress sends to the service."""
    if doc["kind"] == "HTTPRoute":
        return [
            (match["path"]["type"], match["path"]["value"])
            for rule in doc["spec"]["rules"]
            for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
        ]
    return [
        (path["pathType"], path["path"]) for rule in doc["spec"]["rules"] for path in rule["http"]["paths"]
    ]


def relabel(rules: list[dict], labels: dict[str, str]) -> dict[str, str] | None:
    """Apply Prometheus relabel rules (keep, drop, replace) to a target's labels; None: dropped."""
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if (action == "keep" and not match) or (action == "drop" and match):
            return None
        if action == "replace" and match:
            replacement = re.sub(r"\$(\d+)", r"\\\1", rule.get("replacement", "$1"))
            labels[rule["target_label"]] = match.expand(replacement)
    return labels


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(BASE)))
def test_every_manifest_is_valid_against_the_strict_kubernetes_schemas(path, version):
    """Validate every object of every manifest file strictly, for each Kubernetes version."""
    docs = documents(path)
    assert docs
    for doc in docs:
        validate_object(doc, version)


@pytest.mark.parametrize(
    ("name", "spoil", "reason"),
    [
        pytest.param(
            "deployment.yaml",
            lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSecond=20),
            "'terminationGracePeriodSecond' was unexpected",
            id="misspelt-field",
        ),
        pytest.param(
            "deployment.yaml",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"),
            "'name' is a required property",
            id="missing-required-field",
        ),
        pytest.param(
            "deployment.yaml",
            lambda d: d["spec"]["template"]["spec"]["securityContext"].update(runAsUser="10001"),
            "'10001' is not of type 'integer'",
            id="string-for-integer",
        ),
        pytest.param(
            "configmap.yaml",
            lambda d: d["data"].update(PORT=8000),
            "8000 is not of type 'string'",
            id="integer-configmap-value",
        ),
        pytest.param(
            "httproute.yaml",
            lambda d: d["spec"]["rules"][0]["matches"][0]["path"].update(type="Prefix"),
            "'Prefix' is not one of",
            id="httproute-unknown-path-type",
        ),
        pytest.param(
            "httproute.yaml",
            lambda d: d["spec"]["rules"][0].update(backendRef=[]),
            "'backendRef' was unexpected",
            id="httproute-misspelt-field",
        ),
        pytest.param(
            "httproute.yaml",
            lambda d: d["metadata"].update(label={}),
            "'label' was unexpected",
            id="httproute-misspelt-metadata",
        ),
    ],
)
def test_a_spoilt_copy_of_a_manifest_fails_validation(name, spoil, reason):
    """Reject a manifest with a misspelt field, a missing one, a wrong type or an unknown value."""
    doc = copy.deepcopy(manifest(name))
    validate_object(doc, KUBERNETES_VERSIONS[-1])
    spoil(doc)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(reason)):
        validate_object(doc, KUBERNETES_VERSIONS[-1])


def test_kubernetes_validate_has_no_schema_for_the_httproute():
    """Confirm that the HTTPRoute needs the test's own Gateway API check (drop it once a schema ships)."""
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(manifest("httproute.yaml"), KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.server
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_kustomize_base_renders_the_service_objects_and_each_is_valid(version):
    """Render the base: the six objects, no Secret, no Ingress, each one strictly valid."""
    docs = kustomize(BASE)
    assert kinds(docs) == {
        ("ConfigMap", "sms-responder"),
        ("Deployment", "sms-responder"),
        ("Service", "sms-responder"),
        ("HorizontalPodAutoscaler", "sms-responder"),
        ("PodDisruptionBudget", "sms-responder"),
        ("HTTPRoute", "sms-responder"),
    }
    for doc in docs:
        validate_object(doc, version)
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "sms-responder"


@pytest.mark.server
def test_the_ingress_component_replaces_the_httproute_with_an_ingress(tmp_path):
    """Render an operator's overlay of the base plus the ingress component."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(BASE, tmp_path)],
                "components": [os.path.relpath(INGRESS_COMPONENT, tmp_path)],
            }
        ),
        encoding="utf-8",
    )
    docs = kustomize(tmp_path)
    assert ("Ingress", "sms-responder") in kinds(docs)
    assert not any(doc["kind"] == "HTTPRoute" for doc in docs)
    for doc in docs:
        validate_object(doc, KUBERNETES_VERSIONS[-1])


def test_the_secret_example_and_the_prometheus_job_are_not_kustomize_resources():
    """List every object file of the base in kustomization.yaml except the Secret example."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    objects = {p.name for p in BASE.glob("*.yaml")} - NOT_OBJECTS
    assert set(kustomization["resources"]) == objects - {"secret.example.yaml"}


def test_the_probe_paths_are_routes_of_the_production_app_and_answer(app):
    """Probe every path the kubelet probes on the production app: it is a GET route that answers 200."""
    client = app.test_client()
    probes = {
        name: container()[name]["httpGet"] for name in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["port"] == "http"
        assert app.url_map.bind("localhost").match(probe["path"], method="GET")
        assert client.get(probe["path"]).status_code == 200


def test_the_container_port_is_the_dockerfiles_and_the_configmaps_port():
    """Listen, probe and route on the port the image and the ConfigMap name."""
    dockerfile = dockerfile_env()
    (port,) = container()["ports"]
    assert port == {"name": "http", "containerPort": int(dockerfile["PORT"]), "protocol": "TCP"}
    config_map = manifest("configmap.yaml")["data"]
    assert config_map["PORT"] == dockerfile["PORT"] and config_map["HOST"] == dockerfile["HOST"] == "0.0.0.0"
    annotations = manifest("deployment.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == dockerfile["PORT"]


def test_the_pods_memory_limit_holds_every_connection_gunicorn_allows_its_workers():
    """Size worker_connections from the container's memory limit as gunicorn.conf.py does, as the files say."""
    limit, workers = manifest_memory_limit(), int(manifest("configmap.yaml")["data"]["WEB_CONCURRENCY"])
    per_worker = serve.connections_per_worker(limit, workers)
    processes = (workers + 1) * serve.PROCESS_MIB * 2**20  # the master and the workers
    assert processes + workers * per_worker * serve.CONNECTION_KIB * 1024 <= limit
    assert 1_000 <= per_worker < serve.MOST_CONNECTIONS
    assert f"{per_worker:,} per worker here" in (BASE / "deployment.yaml").read_text()
    assert dockerfile_env()["WEB_CONCURRENCY"] == str(workers)
    assert f"`--memory 256m`: {per_worker:,} per worker" in (REPO / "Dockerfile").read_text()
    assert limit == 256 * 2**20  # the figure the Dockerfile's comment and docs/deploy.md use


def test_the_pod_runs_as_the_dockerfiles_user_and_group():
    """Run as the uid and gid the Dockerfile creates and switches to."""
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    user = re.search(r"^USER (\S+)$", dockerfile, re.M).group(1)
    useradd = re.search(r"useradd (.*)$", dockerfile, re.M).group(1).split()
    uid, gid = (useradd[useradd.index(option) + 1] for option in ("--uid", "--gid"))
    assert user in (uid, useradd[-1])
    security = pod_spec()["securityContext"]
    assert security["runAsUser"] == int(uid)
    assert security["runAsGroup"] == security["fsGroup"] == int(gid)


def test_the_image_is_the_projects_version_pulled_only_when_missing():
    """Name the image after pyproject's version; operators retag it with kustomize `images:`."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert container()["image"] == f"sms-responder:{version}"
    assert container()["imagePullPolicy"] == "IfNotPresent"


def test_every_environment_name_is_a_variable_the_service_reads():
    """Set no variable that neither the app (config.VARIABLES) nor the server reads."""
    known = set(VARIABLES) | SERVER_VARIABLES
    names = set(manifest("configmap.yaml")["data"]) | {env["name"] for env in container()["env"]}
    assert names <= known, names - known
    assert container()["envFrom"] == [{"configMapRef": {"name": "sms-responder"}}]


def test_the_secrets_come_from_the_secret_and_nothing_else_does():
    """Read exactly the four secret settings from the Secret, optional ones as optional."""
    from_secret = {}
    for env in container()["env"]:
        if "valueFrom" in env:
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "sms-responder" and ref["key"] == env["name"]
            from_secret[env["name"]] = ref.get("optional", False)
        else:
            assert env["name"] not in SECRET_NAMES
    assert from_secret == {name: name in OPTIONAL_SECRETS for name in SECRET_NAMES}
    assert not SECRET_NAMES & set(manifest("configmap.yaml")["data"])
    assert set(manifest("secret.example.yaml")["stringData"]) <= SECRET_NAMES


def test_the_configmap_with_a_secret_is_a_complete_production_configuration(make_app):
    """Start the production app from the ConfigMap's values plus the fixture's key and token."""
    data = manifest("configmap.yaml")["data"]
    config = make_app(**data).config
    assert config["RESPONDER_ENV"] == "production" and config["TWILIO_AUTH_TOKENS"]
    assert (config["HOST"], config["PORT"]) == ("0.0.0.0", container()["ports"][0]["containerPort"])
    assert config["PUBLIC_URLS"] == ("https://sms.example.com",)
    assert config["TRUSTED_PROXIES"] == 1
    assert int(data["WEB_CONCURRENCY"]) >= 1


def test_the_secret_example_is_refused_by_the_service(tmp_path):
    """Refuse to start with the example Secret's placeholders, naming each one."""
    settings = {**manifest("configmap.yaml")["data"], **manifest("secret.example.yaml")["stringData"]}
    with pytest.raises(ConfigError) as refused:
        load_settings(settings, tmp_path / "dev-secret-key")
    problems = "\n".join(refused.value.problems)
    assert "SECRET_KEY is 10 characters" in problems
    assert "TWILIO_AUTH_TOKEN is not a Twilio auth token" in problems
    text = (BASE / "secret.example.yaml").read_text(encoding="utf-8")
    assert "kubectl create secret generic sms-responder" in text


def test_the_grace_period_covers_the_prestop_pause_and_gunicorns_graceful_timeout():
    """Give a terminating pod its preStop pause, gunicorn's graceful_timeout and a margin."""
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    needed = int(command[1]) + gunicorn_setting("graceful_timeout") + SHUTDOWN_MARGIN_SECONDS
    assert pod_spec()["terminationGracePeriodSeconds"] >= needed


def test_only_the_webhook_is_routed_publicly(app):
    """Route /sms alone (exact) through the HTTPRoute and the Ingress: no /metrics, no probes."""
    adapter = app.url_map.bind("sms.example.com")
    service = manifest("service.yaml")
    for doc in (manifest("httproute.yaml"), manifest("ingress/ingress.yaml")):
        assert public_paths(doc) == [("Exact", "/sms")] and "defaultBackend" not in doc["spec"]
        assert adapter.match("/sms", method="POST")[0] == "webhook.sms"
    (rule,) = manifest("httproute.yaml")["spec"]["rules"]
    assert rule["backendRefs"] == [
        {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
    ]
    ingress = manifest("ingress/ingress.yaml")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert ingress == {"name": "sms-responder", "port": {"name": service["spec"]["ports"][0]["name"]}}
    assert adapter.match("/metrics", method="GET")


def test_the_service_pdb_hpa_and_spread_select_the_deployments_pods():
    """Select the pod template's labels everywhere and send the Service to the named container port."""
    deployment = manifest("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert manifest("service.yaml")["spec"]["selector"] == labels
    assert manifest("service.yaml")["spec"]["ports"][0]["targetPort"] == container()["ports"][0]["name"]
    assert manifest("pdb.yaml")["spec"]["selector"]["matchLabels"] == labels
    (spread,) = pod_spec()["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == labels
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    hpa = manifest("hpa.yaml")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sms-responder"}
    assert hpa["minReplicas"] == deployment["spec"]["replicas"] == 2 <= hpa["maxReplicas"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_pod_meets_the_restricted_pod_security_standard():
    """Run non-root, seccomp RuntimeDefault, no privilege escalation, no capabilities, read-only root."""
    security = pod_spec()["securityContext"]
    assert security["runAsNonRoot"] is True and security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container()["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert all(set(volume) == {"name", "emptyDir"} for volume in pod_spec()["volumes"])
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        assert field not in pod_spec()


def test_the_metrics_files_live_on_the_memory_backed_tmp_volume():
    """Mount a size-limited memory emptyDir at /tmp and keep PROMETHEUS_MULTIPROC_DIR on it."""
    (mount,) = container()["volumeMounts"]
    (volume,) = pod_spec()["volumes"]
    assert mount == {"name": volume["name"], "mountPath": "/tmp"}
    assert volume["emptyDir"]["medium"] == "Memory" and volume["emptyDir"]["sizeLimit"]
    env = {e["name"]: e.get("value") for e in container()["env"]}
    assert Path(env["PROMETHEUS_MULTIPROC_DIR"]).parent == Path(mount["mountPath"])


def test_the_prometheus_job_scrapes_each_annotated_pod_at_its_metrics_route(app):
    """Relabel a discovered pod as Prometheus would: its IP, annotated port and path; others dropped."""
    (job,) = yaml.safe_load((BASE / "prometheus-scrape.yaml").read_text(encoding="utf-8"))["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    template = manifest("deployment.yaml")["spec"]["template"]["metadata"]

    def discovered(ip: str, **extra: str) -> dict[str, str]:
        meta = {
            "__address__": f"{ip}:8000" if ":" not in ip else f"[{ip}]:8000",
            "__metrics_path__": "/metrics",
            "__meta_kubernetes_pod_ip": ip,
            "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_namespace": "sms",
            "__meta_kubernetes_pod_name": "sms-responder-abc",
        }
        for key, value in template["annotations"].items():
            meta["__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
        for key, value in template["labels"].items():
            meta["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
        return meta | extra

    port, path = template["annotations"]["prometheus.io/port"], template["annotations"]["prometheus.io/path"]
    for ip, address in (("10.1.2.3", f"10.1.2.3:{port}"), ("fd00::7", f"[fd00::7]:{port}")):
        target = relabel(job["relabel_configs"], discovered(ip, __address__="ignored:1"))
        assert (target["__address__"], target["__metrics_path__"]) == (address, path)
        assert (target["namespace"], target["pod"]) == ("sms", "sms-responder-abc")
    assert (
        relabel(job["relabel_configs"], discovered("10.1.2.3", __meta_kubernetes_pod_phase="Pending")) is None
    )
    unannotated = discovered("10.1.2.4", __meta_kubernetes_pod_annotation_prometheus_io_scrape="")
    assert relabel(job["relabel_configs"], unannotated) is None
    assert app.test_client().get(path).status_code == 200


@pytest.mark.server
def test_the_pages_secret_command_makes_the_secret_the_pods_read(tmp_path):
    """Run the page's `kubectl create secret` client-side: it holds every required secret the pods read."""
    require("kubectl", "kubectl >= 1.27")
    (block,) = shell_blocks("docs/deploy.md", "## Kubernetes")
    read, create, apply = block.replace("\\\n", " ").strip().splitlines()
    assert read.startswith("read -rs TWILIO_AUTH_TOKEN") and apply == "kubectl apply -k deploy/kubernetes"
    result = subprocess.run(
        ["bash", "-ec", create + " --dry-run=client -o yaml"], cwd=REPO, capture_output=True, text=True,
        timeout=60, env={**os.environ, "TWILIO_AUTH_TOKEN": TOKEN},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    secret = yaml.safe_load(result.stdout)
    values = {name: base64.b64decode(value).decode() for name, value in secret["data"].items()}
    assert secret["metadata"]["name"] == "sms-responder"
    assert set(values) == SECRET_NAMES - OPTIONAL_SECRETS and values["TWILIO_AUTH_TOKEN"] == TOKEN
    load_settings({**manifest("configmap.yaml")["data"], **values}, tmp_path / "dev-secret-key")


def route_hosts(doc: dict) -> list[str]:
    """The host names an Ingress (rules and TLS) or an HTTPRoute answers for."""
    if doc["kind"] == "HTTPRoute":
        return doc["spec"]["hostnames"]
    return [rule["host"] for rule in doc["spec"]["rules"]] + [
        h for tls in doc["spec"]["tls"] for h in tls["hosts"]
    ]


@pytest.mark.server
@pytest.mark.parametrize("route", ["Ingress", "HTTPRoute"])
def test_the_pages_overlay_renders_with_its_image_its_url_and_the_routes_host(tmp_path, route):
    """Render the page's my-overlay beside a checkout named sms-responder, as written and without the component."""
    page = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    overlay = re.search(r"```yaml\n# my-overlay/kustomization.yaml\n(.*?)```", page, re.S).group(1)
    if route == "HTTPRoute":
        overlay = "\n".join(line for line in overlay.splitlines() if not line.startswith("components:"))
    (tmp_path / "sms-responder").symlink_to(REPO)
    (tmp_path / "my-overlay").mkdir()
    (tmp_path / "my-overlay" / "kustomization.yaml").write_text(overlay, encoding="utf-8")
    docs = kustomize(tmp_path / "my-overlay")
    (deployment,) = [doc for doc in docs if doc["kind"] == "Deployment"]
    (configmap,) = [doc for doc in docs if doc["kind"] == "ConfigMap"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/sms-responder:0.2.0"
    )
    assert configmap["data"]["PUBLIC_URL"] == "https://sms.example.org"
    assert configmap["data"]["TRUSTED_PROXIES"] == "1"
    (routed,) = [doc for doc in docs if doc["kind"] in ("Ingress", "HTTPRoute")]
    assert (routed["kind"], routed["metadata"]["name"]) == (route, "sms-responder")
    assert set(route_hosts(routed)) == {urlsplit(configmap["data"]["PUBLIC_URL"]).hostname}
    for doc in docs:
        validate_object(doc, KUBERNETES_VERSIONS[-1])
