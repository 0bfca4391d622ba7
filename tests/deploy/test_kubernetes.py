"""The kustomize overlays: they render with `kubectl kustomize`, validate
against the Kubernetes API schemas that kubernetes-validate bundles, and keep
the rules the deployment relies on (probes, limits, non-root pods, policies)."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.helpers import ROOT, SERVICES, setting_names, settings_classes

KUSTOMIZE_ROOT = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
# The API version the schemas are checked against; native gRPC probes need
# 1.27 or later.
KUBERNETES_VERSION = "1.30.0"
GRPC_PORTS = {"keys": 8112, "providers": 8114}

requires_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not installed, so the overlays cannot be rendered",
)


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZE_ROOT / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} named {name} in the rendered overlay")


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def pod_specs(docs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        for doc in docs
        if doc["kind"] in {"Deployment", "Job"}
    ]


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_matches_kubernetes_schemas(overlay: str) -> None:
    docs = render(overlay)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_schema_validation_rejects_unknown_field() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "broken"},
        "spec": {
            "selector": {"matchLabels": {"app": "broken"}},
            "template": {
                "metadata": {"labels": {"app": "broken"}},
                "spec": {"containers": [{"name": "c", "image": "i", "prots": []}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_has_each_service_part(overlay: str) -> None:
    docs = render(overlay)
    for name in SERVICES:
        find(docs, "Deployment", name)
        find(docs, "Service", name)
        find(docs, "Job", f"{name}-migrate")
        configmaps = [
            doc["metadata"]["name"]
            for doc in of_kind(docs, "ConfigMap")
            if doc["metadata"]["name"].startswith(f"{name}-config")
        ]
        assert len(configmaps) == 1, f"{name}: {configmaps}"
    find(docs, "Deployment", "generation-worker")
    find(docs, "Deployment", "nginx")
    find(docs, "Service", "nginx")


@requires_kubectl
def test_dev_overlay_fills_secret_templates() -> None:
    docs = render("dev")
    for name in SERVICES:
        secret = find(docs, "Secret", f"{name}-secrets")
        for key, value in secret["stringData"].items():
            assert value != "change-me", f"{name}-secrets {key} is a placeholder"


@requires_kubectl
def test_production_overlay_leaves_secrets_out() -> None:
    """Applying production must never overwrite the secrets made out of band."""
    assert of_kind(render("production"), "Secret") == []


@requires_kubectl
def test_production_overlay_sets_production_environment() -> None:
    docs = render("production")
    for doc in of_kind(docs, "ConfigMap"):
        if not doc["metadata"]["name"].startswith("nginx-config"):
            assert doc["data"]["ENVIRONMENT"] == "production", doc["metadata"]["name"]


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_non_root_read_only(overlay: str) -> None:
    for name, spec in pod_specs(render(overlay)):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for container in spec["containers"] + spec.get("initContainers", []):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            mounts = {
                mount["mountPath"]: mount["name"]
                for mount in container.get("volumeMounts", [])
            }
            if name not in {"postgres", "redis"}:
                assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp"


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_have_resources(overlay: str) -> None:
    for name, spec in pod_specs(render(overlay)):
        for container in spec["containers"] + spec.get("initContainers", []):
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), f"{name} {kind}"


@requires_kubectl
@pytest.mark.parametrize("service", SERVICES)
def test_service_probes(service: str) -> None:
    deployment = find(render("production"), "Deployment", service)
    container = deployment["spec"]["template"]["spec"]["containers"][0]

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    if service in GRPC_PORTS:
        assert container["livenessProbe"]["grpc"]["port"] == GRPC_PORTS[service]
    else:
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


@requires_kubectl
@pytest.mark.parametrize("service", SERVICES)
def test_deployment_migrates_first(service: str) -> None:
    deployment = find(render("production"), "Deployment", service)
    spec = deployment["spec"]["template"]["spec"]
    job = find(render("production"), "Job", f"{service}-migrate")
    job_container = job["spec"]["template"]["spec"]["containers"][0]

    assert spec["initContainers"][0]["args"] == ["migrate"]
    assert job_container["args"] == ["migrate"]
    assert job_container["image"] == spec["containers"][0]["image"]


@requires_kubectl
def test_autoscalers_target_generation_and_worker() -> None:
    docs = render("production")
    targets = sorted(
        doc["spec"]["scaleTargetRef"]["name"]
        for doc in of_kind(docs, "HorizontalPodAutoscaler")
    )
    assert targets == ["generation", "generation-worker"]
    for name in targets:
        assert "replicas" not in find(docs, "Deployment", name)["spec"], name


@requires_kubectl
def test_network_policies_guard_ports() -> None:
    docs = render("production")
    policies = {
        doc["metadata"]["name"]: doc["spec"] for doc in of_kind(docs, "NetworkPolicy")
    }

    assert policies["default-deny-ingress"]["podSelector"] == {}
    http_rule = policies["http-from-nginx"]["ingress"]
    assert http_rule[0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nginx"}}}
    ]
    grpc_rule = policies["grpc-from-generation"]["ingress"]
    assert grpc_rule[0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "generation"}}}
    ]
    assert grpc_rule[0]["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    for name in GRPC_PORTS:
        container = find(docs, "Deployment", name)["spec"]["template"]["spec"][
            "containers"
        ][0]
        port_names = {
            port["name"]: port["containerPort"] for port in container["ports"]
        }
        assert port_names["grpc"] == GRPC_PORTS[name]


@requires_kubectl
@pytest.mark.parametrize("service", SERVICES)
def test_service_gets_every_setting(service: str) -> None:
    """Each setting is in the service's ConfigMap or its Secret template."""
    docs = render("dev")
    config = next(
        doc["data"]
        for doc in of_kind(docs, "ConfigMap")
        if doc["metadata"]["name"].startswith(f"{service}-config")
    )
    secret = find(docs, "Secret", f"{service}-secrets")["stringData"]
    names = setting_names(settings_classes()[service])

    for name in sorted(names):
        assert name in config or name in secret, f"{service} lacks {name}"
