"""Lock the Python requirements of every container image, with hashes.

Run it as `make lock`. For each service it writes two files:

- `services/<name>/requirements.lock`: what the image runs with, compiled from
  the service's own pyproject.toml plus the shared library's (libs/common), and
  nothing of the other services.
- `services/<name>/requirements-build.lock`: grpcio-tools for the image's
  builder stage, which generates the gRPC stubs. Its grpcio and protobuf are
  pinned to the versions in the runtime lock, so the generated code matches the
  runtime it imports.

The simulator's lock goes to `deploy/compose/simulator-requirements.lock`.
Existing pins are kept unless `--upgrade` is given.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("auth", "keys", "providers", "generation")
COMMON_PYPROJECT = ROOT / "libs" / "common" / "pyproject.toml"
SIMULATOR_LOCK = ROOT / "deploy" / "compose" / "simulator-requirements.lock"
# Our own distributions: installed from the source tree, never from an index.
LOCAL_PREFIX = "imagerouter-"
# Pins copied from the runtime lock into the build lock.
SHARED_WITH_BUILD = ("grpcio", "protobuf")


def declared_dependencies(*pyprojects: Path) -> list[str]:
    """Return the third-party requirements that the given pyproject files declare."""
    requirements: list[str] = []
    for path in pyprojects:
        project = tomllib.loads(path.read_text())["project"]
        for requirement in project.get("dependencies", []):
            if not requirement.startswith(LOCAL_PREFIX):
                requirements.append(requirement)
    return requirements


def locked_versions(lock: Path) -> dict[str, str]:
    """Return the `name -> version` pins of a pip-compile output file."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def compile_lock(
    input_name: str, requirements: list[str], output: Path, upgrade: bool
) -> None:
    """Compile `requirements` into `output` with pip-compile, hashes included."""
    with tempfile.TemporaryDirectory() as folder:
        # A relative input path keeps temporary folder names out of the lock.
        (Path(folder) / input_name).write_text("\n".join(requirements) + "\n")
        command = [
            sys.executable,
            "-m",
            "piptools",
            "compile",
            "--quiet",
            "--generate-hashes",
            "--allow-unsafe",
            "--strip-extras",
            "--no-emit-index-url",
            "--no-emit-find-links",
            "--output-file",
            str(output),
            input_name,
        ]
        if upgrade:
            command.append("--upgrade")
        print(f"Locking {output.relative_to(ROOT)}", flush=True)
        # pip-compile names this command in the header of the file it writes.
        environment = {**os.environ, "CUSTOM_COMPILE_COMMAND": "make lock"}
        subprocess.run(command, cwd=folder, env=environment, check=True)


def lock_service(name: str, upgrade: bool) -> None:
    service_dir = ROOT / "services" / name
    runtime_lock = service_dir / "requirements.lock"
    compile_lock(
        f"{name}.in",
        declared_dependencies(COMMON_PYPROJECT, service_dir / "pyproject.toml"),
        runtime_lock,
        upgrade,
    )

    pins = locked_versions(runtime_lock)
    build_requirements = ["grpcio-tools"]
    for package in SHARED_WITH_BUILD:
        build_requirements.append(f"{package}=={pins[package]}")
    compile_lock(
        f"{name}-build.in",
        build_requirements,
        service_dir / "requirements-build.lock",
        upgrade,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--upgrade",
        action="store_true",
        help="move every pin to the newest version allowed (default: keep pins)",
    )
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="images to lock: "
        + ", ".join([*SERVICES, "simulator"])
        + " (default: all of them)",
    )
    args = parser.parse_args()
    images = args.images or [*SERVICES, "simulator"]
    unknown = sorted(set(images) - {*SERVICES, "simulator"})
    if unknown:
        parser.error(f"unknown image {', '.join(unknown)}")

    for image in images:
        if image == "simulator":
            compile_lock(
                "simulator.in",
                declared_dependencies(ROOT / "simulator" / "pyproject.toml"),
                SIMULATOR_LOCK,
                args.upgrade,
            )
        else:
            lock_service(image, args.upgrade)
    return 0


if __name__ == "__main__":
    sys.exit(main())
