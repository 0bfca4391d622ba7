"""What the deploy tests share: the repository's paths, the compose file read
the way `docker compose` reads it, and the services' settings classes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SERVICES = ("auth", "keys", "providers", "generation")
DOCKERFILES = [
    *(ROOT / "services" / name / "Dockerfile" for name in SERVICES),
    ROOT / "simulator" / "Dockerfile",
    ROOT / "nginx" / "Dockerfile",
]

# `${NAME}`, `${NAME:-default}` and `${NAME-default}`; `$$` is a literal `$`.
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def load_compose() -> dict[str, Any]:
    """Return docker-compose.yml as YAML data, anchors and merge keys resolved."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """Return the `NAME=value` lines of an env file, comments left out."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, value = line.partition("=")
        assert separator, f"{path.name}: not a NAME=value line: {line!r}"
        values[name.strip()] = value.strip()
    return values


def compose_defaults(text: str) -> dict[str, str]:
    """Return the `${NAME:-default}` defaults written in `text`, by name."""
    return {
        match.group(1): match.group(3)
        for match in _VARIABLE.finditer(text)
        if match.group(1) and match.group(2)
    }


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Substitute variables in one compose value as `docker compose` does."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.groups()
        found = variables.get(name)
        if operator == ":-" and not found:
            return default
        if operator == "-" and found is None:
            return default
        return found or ""

    return _VARIABLE.sub(substitute, value)


def container_environment(service: str, variables: dict[str, str]) -> dict[str, str]:
    """Return the environment that compose gives one service's container."""
    environment = load_compose()["services"][service].get("environment", {})
    return {
        name: interpolate(str(value), variables) for name, value in environment.items()
    }


def settings_classes() -> dict[str, type[BaseSettings]]:
    """Return each service's pydantic-settings class, by service name."""
    from auth_service.settings import Settings as AuthSettings
    from generation_service.settings import Settings as GenerationSettings
    from keys_service.settings import Settings as KeysSettings
    from providers_service.settings import Settings as ProvidersSettings

    return {
        "auth": AuthSettings,
        "keys": KeysSettings,
        "providers": ProvidersSettings,
        "generation": GenerationSettings,
    }


def setting_names(settings_class: type[BaseSettings]) -> set[str]:
    """Return the environment variable names that a settings class reads."""
    prefix = settings_class.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in settings_class.model_fields}


def declared_requirements(*pyprojects: Path) -> set[str]:
    """Return the normalized names of the third-party dependencies declared."""
    names = set()
    for path in pyprojects:
        for requirement in tomllib.loads(path.read_text())["project"]["dependencies"]:
            name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
            if not name.startswith("imagerouter-"):
                names.add(name.lower().replace("_", "-"))
    return names
