"""deploy/k8s: every manifest is valid against Kubernetes' own schemas (strict: an unknown or
misspelt field fails), offline, with the schemas the kubernetes-validate package ships; and
the manifests keep what docs/deploy.md promises: one namespace, passwords only through
Secrets that the documented commands create, a readiness probe that checks the store, a
liveness probe that does not, and resource requests and limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_checks import KNOWN_VARIABLES, require

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
# The oldest and the newest Kubernetes the package has schemas for (1.25 and 1.37 in 1.37.0).
VERSIONS = ("oldest", "latest")
SECRET_LIKE = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|CONNECTION_STRING|TOKEN")


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _resources() -> dict[str, dict[str, Any]]:
    """Every resource of deploy/k8s by kind (one of each)."""
    found: dict[str, dict[str, Any]] = {}
    for path in _manifests():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc["kind"] not in found, f"two {doc['kind']}s"
            found[doc["kind"]] = doc
    return found


def _container() -> dict[str, Any]:
    containers = _resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", _manifests(), ids=lambda p: p.name)
def test_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    kv = require("kubernetes_validate")
    version = {"oldest": kv.utils.all_versions()[0], "latest": kv.latest_version()}[version]
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{path.name} ({doc['kind']}) against Kubernetes {version}: "
                        f"{'.'.join(map(str, exc.path))}: {exc.message}", pytrace=False)


def test_validation_catches_a_misspelt_field() -> None:
    """The check above can fail: a misspelt probe is refused."""
    kv = require("kubernetes_validate")
    deployment = _resources()["Deployment"]
    spec = deployment["spec"]["template"]["spec"]["containers"][0]
    spec["readinesProbe"] = spec.pop("readinessProbe")  # sic
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, kv.latest_version(), strict=True)


def test_kustomization_applies_every_manifest_into_one_namespace() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == [p.name for p in _manifests()]
    namespace = kustomization["namespace"]
    resources = _resources()
    assert resources["Namespace"]["metadata"]["name"] == namespace
    for kind, doc in resources.items():
        if kind != "Namespace":  # also for kubectl apply -f without kustomize
            assert doc["metadata"].get("namespace") == namespace, kind


def test_settings_are_known_and_passwords_come_from_secrets() -> None:
    config = _resources()["ConfigMap"]["data"]
    unknown = [k for k in config if k.startswith("MLGATE_") and k not in KNOWN_VARIABLES]
    assert not unknown, f"the ConfigMap sets variables mlgate does not read: {unknown}"
    assert not [k for k in config if SECRET_LIKE.search(k)], "a secret in the ConfigMap"
    for var in _container()["env"]:
        if SECRET_LIKE.search(var["name"]):
            assert "value" not in var and "secretKeyRef" in var["valueFrom"], var["name"]
    assert "MLGATE_ADMIN_USERNAME" in config
    env = {v["name"] for v in _container()["env"]}
    assert {"MLGATE_ADMIN_PASSWORD", "PGPASSWORD"} <= env


def test_docs_create_every_required_secret() -> None:
    """Each Secret key the pod cannot start without is created by docs/deploy.md's
    `kubectl create secret generic NAME --namespace NS --from-literal=KEY=...` commands."""
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    # The command's name and the rest of it, continuation lines included.
    commands = re.findall(r"kubectl create secret generic (\S+)((?:[^\n]*\\\n)*[^\n]*)", doc)
    created = {(name, key) for name, options in commands
               for key in re.findall(r"--from-(?:literal|file)=([\w.-]+)=", options)}
    namespaced = all("--namespace mlgate" in options or "-n mlgate" in options
                     for _, options in commands)
    assert namespaced, "a kubectl create secret command without --namespace mlgate"
    for var in _container()["env"]:
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None and not ref.get("optional", False):
            assert (ref["name"], ref["key"]) in created, \
                f"docs/deploy.md creates no secret {ref['name']} key {ref['key']}"


def test_probes_resources_and_grace() -> None:
    container = _container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    # Liveness and startup must not depend on the database (see the manifest's comment).
    assert container["livenessProbe"]["httpGet"]["path"] != "/health"
    assert container["startupProbe"]["httpGet"]["path"] != "/health"
    # The probe times out after the gateway's own deadline, so it sees the 503.
    from gateway.routes.meta import HEALTH_DEADLINE
    assert container["readinessProbe"]["timeoutSeconds"] > HEALTH_DEADLINE
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    config = _resources()["ConfigMap"]["data"]
    stopping = float(config["MLGATE_SHUTDOWN_TIMEOUT"]) + float(config["MLGATE_DRAIN_SECONDS"])
    grace = _resources()["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > stopping


def test_replicas_roll_and_survive_disruptions_one_at_a_time() -> None:
    """Two replicas; an update brings a new pod up before an old one goes; the disruption
    budget covers the Deployment's pods and leaves room for one to move."""
    resources = _resources()
    deployment, budget = resources["Deployment"], resources["PodDisruptionBudget"]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = spec["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < spec["replicas"]
    assert float(resources["ConfigMap"]["data"]["MLGATE_DRAIN_SECONDS"]) > 0
