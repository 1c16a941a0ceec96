"""Offline validation of deploy/kubernetes against the Kubernetes JSON schemas (strict: unknown
fields are errors), plus the properties the rebalancer relies on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra) ships the Kubernetes schemas"
)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
APP_SERVICES = ("scheduler", "pricer", "planner", "executor", "ledger", "api")
# The oldest Kubernetes we support and the newest the schema package knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())

Manifest = dict[str, Any]


def load_documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization() -> Manifest:
    document: Manifest = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return document


def applied() -> list[Manifest]:
    """What ``kubectl apply -k`` creates (the Secrets are made out of band)."""
    return [doc for name in kustomization()["resources"] for doc in load_documents(K8S / name)]


def every_manifest() -> list[tuple[str, Manifest]]:
    return [
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_documents(path)
    ]


def find(kind: str, name: str, manifests: list[Manifest] | None = None) -> Manifest:
    for doc in manifests if manifests is not None else applied():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind}/{name}")


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    ("filename", "manifest"), every_manifest(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_manifest_matches_the_kubernetes_schema(filename: str, manifest: Manifest, version: str) -> None:
    kubernetes_validate.validate(manifest, version, strict=True)


def test_strict_validation_rejects_a_misspelt_field() -> None:
    deployment = find("Deployment", "pricer")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30", strict=True)


def test_kustomization_lists_existing_files_and_leaves_the_example_secret_out() -> None:
    resources = kustomization()["resources"]
    for name in resources:
        assert (K8S / name).is_file(), name
    assert "secret.example.yaml" not in resources
    assert all(doc["kind"] != "Secret" for doc in applied())
    for doc in applied():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == kustomization()["namespace"], doc["metadata"]["name"]


def test_nats_is_a_three_node_jetstream_cluster_and_the_stream_has_three_replicas() -> None:
    nats = find("StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    config = find("ConfigMap", "nats-config")["data"]["nats.conf"]
    assert "jetstream" in config and "store_dir: /data" in config
    routes = set(re.findall(r"nats://(nats-\d)\.nats-headless:6222", config))
    assert routes == {"nats-0", "nats-1", "nats-2"}
    assert find("Service", "nats-headless")["spec"]["clusterIP"] == "None"
    assert find("ConfigMap", "rebalancer-config")["data"]["STREAM_REPLICAS"] == "3"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_service_is_replicated_probed_sized_and_takes_secrets_from_a_secret(name: str) -> None:
    deployment = find("Deployment", name)
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    spec = pod_spec(deployment)
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["args"] == [f"services.{name}"]
    assert (ROOT / "services" / name).is_dir()

    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    expected_port = 8000 if name == "api" else 9100
    assert expected_port in ports.values()
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        assert container[probe]["httpGet"]["path"] == path, probe
        assert ports[container[probe]["httpGet"]["port"]] == expected_port, probe

    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]

    from_secret = {
        env["name"]: env["valueFrom"]["secretKeyRef"]["name"]
        for env in container["env"]
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert from_secret == {
        "DATABASE_URL": "rebalancer-secrets",
        "REBALANCER_SECRET_KEYS": "rebalancer-secrets",
    }
    assert all("value" not in env for env in container["env"]), "no literal values next to secrets"
    assert container["envFrom"] == [{"configMapRef": {"name": "rebalancer-config"}}]


def test_secret_references_exist_in_the_example_secrets() -> None:
    example = {
        doc["metadata"]["name"]: doc["stringData"] for doc in load_documents(K8S / "secret.example.yaml")
    }
    for doc in applied():
        if doc["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        for container in pod_spec(doc)["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in example[ref["name"]], f"{doc['metadata']['name']}: {ref}"


def test_config_map_carries_no_secret() -> None:
    data = find("ConfigMap", "rebalancer-config")["data"]
    assert not {"DATABASE_URL", "REBALANCER_SECRET_KEYS", "POSTGRES_PASSWORD"} & set(data)


def test_services_select_pods_that_expose_the_target_port() -> None:
    workloads = [doc for doc in applied() if doc["kind"] in {"Deployment", "StatefulSet"}]
    for service in (doc for doc in applied() if doc["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        selected = [w for w in workloads if selector <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        for workload in selected:
            port_names = {p["name"] for c in pod_spec(workload)["containers"] for p in c.get("ports", [])}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in port_names, (
                    service["metadata"]["name"],
                    workload["metadata"]["name"],
                )
    metrics_service = find("Service", "rebalancer-metrics")
    scraped = {
        w["metadata"]["name"]
        for w in workloads
        if metrics_service["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
    }
    assert scraped == set(APP_SERVICES) - {"api"}


def test_migration_job_runs_the_migrator_with_the_database_secret() -> None:
    job = find("Job", "rebalancer-migrate")
    (container,) = pod_spec(job)["containers"]
    assert container["args"] == ["services.common.migrate"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": "rebalancer-secrets",
        "key": "DATABASE_URL",
    }
    assert pod_spec(job)["restartPolicy"] in {"OnFailure", "Never"}


def test_every_image_of_ours_is_the_one_kustomize_retags() -> None:
    image_names = {entry["name"] for entry in kustomization()["images"]}
    for doc in applied():
        if doc["kind"] in {"Deployment", "Job"}:
            for container in pod_spec(doc)["containers"]:
                assert container["image"].split(":")[0] in image_names
