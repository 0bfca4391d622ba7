"""docker-compose.yml and .env.example, checked without a Docker engine.

The compose file is validated against the Compose Specification's JSON schema
that check-jsonschema ships (`--builtin-schema vendor.compose-spec`), which
works offline. The schema cannot see references between services, so the
tests below check those too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.helpers import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    SERVICES,
    compose_defaults,
    load_compose,
    read_env_file,
    setting_names,
    settings_classes,
)

CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
# Settings that compose fixes per container instead of taking from `.env`.
SET_PER_CONTAINER = {
    "DATABASE_URL",
    "REDIS_URL",
    "MIGRATE_ON_START",
    "HTTP_HOST",
    "HTTP_PORT",
    "GRPC_HOST",
    "GRPC_PORT",
    "KEYS_GRPC_ADDR",
    "PROVIDERS_GRPC_ADDR",
    "IMAGES_DIR",
}


def validate_with_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHECK_JSONSCHEMA),
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_matches_schema() -> None:
    result = validate_with_schema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_rejects_unknown_key(tmp_path: Path) -> None:
    broken = load_compose()
    broken["services"]["auth"]["restart_policy"] = "always"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))

    result = validate_with_schema(path)

    assert result.returncode != 0
    assert "restart_policy" in result.stdout + result.stderr


def test_compose_only_nginx_publishes_ports() -> None:
    services = load_compose()["services"]
    publishing = sorted(name for name, spec in services.items() if spec.get("ports"))
    assert publishing == ["nginx"]


def test_compose_dependencies_exist() -> None:
    services = load_compose()["services"]
    for name, spec in services.items():
        for dependency, rule in spec.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert rule["condition"] in {
                "service_healthy",
                "service_completed_successfully",
            }, f"{name} starts before {dependency} is ready"
            if rule["condition"] == "service_healthy":
                healthcheck = services[dependency].get("healthcheck", {})
                assert not healthcheck.get("disable"), (
                    f"{name} waits for {dependency}, which has no health check"
                )


@pytest.mark.parametrize("service", SERVICES)
def test_compose_migrates_before_service(service: str) -> None:
    services = load_compose()["services"]
    migrate = services[f"{service}-migrate"]

    assert migrate["command"] == ["migrate"]
    assert migrate["image"] == services[service]["image"]
    assert migrate["environment"] == services[service]["environment"]
    assert migrate["restart"] == "no"
    condition = services[service]["depends_on"][f"{service}-migrate"]["condition"]
    assert condition == "service_completed_successfully"


def test_compose_worker_shares_generation_image() -> None:
    services = load_compose()["services"]
    worker = services["worker"]

    assert worker["command"] == ["worker"]
    assert worker["image"] == services["generation"]["image"]
    assert worker["environment"] == services["generation"]["environment"]


def test_compose_images_volume_shared() -> None:
    services = load_compose()["services"]
    assert "images:/data/images" in services["generation"]["volumes"]
    assert "images:/data/images" in services["worker"]["volumes"]
    assert "images:/data/images:ro" in services["nginx"]["volumes"]


def test_compose_simulator_only_in_profile() -> None:
    services = load_compose()["services"]
    for name in ("simulator", "demo-providers"):
        assert services[name]["profiles"] == ["simulator"]
    for name, spec in services.items():
        if name not in {"simulator", "demo-providers"}:
            assert "profiles" not in spec, f"{name} should always run"


def test_compose_services_listen_on_all_interfaces() -> None:
    """The images set HTTP_HOST and GRPC_HOST to 0.0.0.0; nothing resets them."""
    services = load_compose()["services"]
    for name in SERVICES:
        environment = services[name]["environment"]
        assert environment.get("HTTP_HOST", "0.0.0.0") == "0.0.0.0"
        assert environment.get("GRPC_HOST", "0.0.0.0") == "0.0.0.0"
    for name in SERVICES:
        dockerfile = (ROOT / "services" / name / "Dockerfile").read_text()
        assert "HTTP_HOST=0.0.0.0" in dockerfile
        if name in {"keys", "providers"}:
            assert "GRPC_HOST=0.0.0.0" in dockerfile


@pytest.mark.parametrize("service", SERVICES)
def test_env_example_lists_every_setting(service: str) -> None:
    """Each setting is in .env.example, or named there as set per container."""
    text = ENV_EXAMPLE.read_text()
    assigned = read_env_file()
    names = setting_names(settings_classes()[service])

    for name in sorted(names):
        if name in SET_PER_CONTAINER:
            assert name in text, f"{name} is not mentioned in .env.example"
        else:
            assert name in assigned, f"{name} of {service} is missing in .env.example"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_passes_every_setting(service: str) -> None:
    environment = load_compose()["services"][service]["environment"]
    names = setting_names(settings_classes()[service])
    # Each image sets these itself (ENV in its Dockerfile).
    from_image = {"HTTP_HOST", "HTTP_PORT", "GRPC_HOST", "GRPC_PORT"}

    for name in sorted(names - from_image):
        assert name in environment, f"compose does not pass {name} to {service}"


def test_compose_defaults_match_env_example() -> None:
    example = read_env_file()
    defaults = compose_defaults(COMPOSE_FILE.read_text())

    assert defaults, "docker-compose.yml has no ${NAME:-default} values"
    for name, default in sorted(defaults.items()):
        assert name in example, f"{name} is used by compose but not in .env.example"
        assert example[name] == default, (
            f"{name}: compose default {default!r}, .env.example {example[name]!r}"
        )


def test_env_example_secrets_rejected_in_production() -> None:
    """The public development secrets must never start a production service."""
    from pydantic import ValidationError

    example = read_env_file()
    classes = settings_classes()
    production = {**example, "ENVIRONMENT": "production"}
    for service in ("auth", "keys"):
        fields = {
            name.lower(): value
            for name, value in production.items()
            if name in setting_names(classes[service])
        }
        with pytest.raises(ValidationError):
            classes[service](**fields)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="no docker-compose")
def test_docker_compose_config_accepts_file() -> None:
    """Where a docker-compose binary is installed, its own loader agrees."""
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
