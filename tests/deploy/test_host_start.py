"""Every service starts from its own folder with only the settings its
container gets, as it would in its image: the environment that
docker-compose.yml gives it, with the defaults of .env.example, and nothing
from the developer's shell.

Only the addresses change: Postgres, Redis and the gRPC peers are reached on
this machine, and every server listens on 127.0.0.1. The ports are free ones
from DEPLOY_TEST_PORT_BASE on, 19161-19190 by default: apart from the default
test stack's 18080-18199, and below the range the kernel hands out for
outgoing connections (32768 and up), where a bind can fail at random.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from stack import ensure_database
from tests.deploy.helpers import ROOT, container_environment, read_env_file

PORT_BASE = int(os.environ.get("DEPLOY_TEST_PORT_BASE", "19161"))
PORT_RANGE = range(PORT_BASE, PORT_BASE + 30)
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0


def deploy_database_url() -> str:
    """The deploy tests' own database, on the test stack's Postgres server."""
    if url := os.environ.get("DEPLOY_TEST_DATABASE_URL"):
        return url
    base = os.environ.get(
        "TEST_DATABASE_URL",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/image_router_test",
    )
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path + "_deploy"))


def free_ports(count: int) -> list[int]:
    ports = []
    for port in PORT_RANGE:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    pytest.fail(f"fewer than {count} free ports in {PORT_RANGE}")


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def wait_for(started: Started, url: str, expected: int = 200) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert started.process.poll() is None, (
            f"{started.name} exited with {started.process.returncode}:\n"
            + started.log_tail()
        )
        if http_status(url) == expected:
            return
        time.sleep(0.3)
    pytest.fail(f"{started.name}: {url} is not {expected}:\n{started.log_tail()}")


def stop(started: Started) -> None:
    if started.process.poll() is None:
        os.kill(started.process.pid, signal.SIGTERM)
        try:
            started.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.kill(started.process.pid, signal.SIGKILL)
            started.process.wait()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostStack]:
    database_url = deploy_database_url()
    ensure_database(database_url, recreate=True)
    stack = HostStack(
        database_url=database_url,
        redis_url=os.environ.get("DEPLOY_TEST_REDIS_URL", "redis://127.0.0.1:6379/14"),
        folder=tmp_path_factory.mktemp("host-start"),
    )
    try:
        yield stack
    finally:
        for started in reversed(stack.started):
            stop(started)


@dataclass
class HostStack:
    database_url: str
    redis_url: str
    folder: Path

    def __post_init__(self) -> None:
        self.started: list[Started] = []
        ports = free_ports(7)
        http, keys_http, providers_http, generation_http = ports[:4]
        keys_grpc, providers_grpc, self.worker_metrics_port = ports[4:]
        self.http_ports = {
            "auth": http,
            "keys": keys_http,
            "providers": providers_http,
            "generation": generation_http,
        }
        self.grpc_ports = {"keys": keys_grpc, "providers": providers_grpc}

    def environment(self, compose_service: str, service: str) -> dict[str, str]:
        """Return the container's environment, re-addressed for this machine."""
        environment = container_environment(compose_service, read_env_file())
        environment.update(
            {
                "PATH": "/usr/bin:/bin",
                "PYTHONUNBUFFERED": "1",
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                # The images set these; they listen on 0.0.0.0 there.
                "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": str(self.http_ports[service]),
            }
        )
        if service in self.grpc_ports:
            environment["GRPC_HOST"] = "127.0.0.1"
            environment["GRPC_PORT"] = str(self.grpc_ports[service])
        if service == "generation":
            environment["KEYS_GRPC_ADDR"] = f"127.0.0.1:{self.grpc_ports['keys']}"
            environment["PROVIDERS_GRPC_ADDR"] = (
                f"127.0.0.1:{self.grpc_ports['providers']}"
            )
            environment["IMAGES_DIR"] = str(self.folder / "images")
            # The worker's own listener, away from a running `make run`'s.
            environment["WORKER_METRICS_HOST"] = "127.0.0.1"
            environment["WORKER_METRICS_PORT"] = str(self.worker_metrics_port)
        return environment

    def run(self, name: str, command: list[str], service: str) -> Started:
        log = self.folder / f"{name}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", f"{service}_service", *command],
                cwd=ROOT / "services" / service,
                env=self.environment(name, service),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        started = Started(name, process, log)
        self.started.append(started)
        return started

    def migrate(self, service: str) -> None:
        started = self.run(f"{service}-migrate", ["migrate"], service)
        code = started.process.wait(timeout=START_TIMEOUT_SECONDS)
        assert code == 0, f"{service} migrate exited {code}:\n{started.log_tail()}"

    def serve(self, service: str) -> Started:
        started = self.run(service, ["serve"], service)
        wait_for(started, f"http://127.0.0.1:{self.http_ports[service]}/healthz")
        return started

    def ready_status(self, service: str) -> int | None:
        return http_status(f"http://127.0.0.1:{self.http_ports[service]}/readyz")


@pytest.mark.parametrize("service", ["providers", "keys", "auth", "generation"])
def test_service_starts_from_own_folder(host: HostStack, service: str) -> None:
    """Migrate, then serve, with the container's settings only.

    The order is the compose order, so generation finds its gRPC peers running.
    """
    host.migrate(service)
    started = host.serve(service)

    wait_for(started, f"http://127.0.0.1:{host.http_ports[service]}/readyz")
    assert host.ready_status(service) == 200


def test_generation_not_ready_without_peer(host: HostStack) -> None:
    """Readiness depends on the gRPC peers, so it can fail; liveness does not."""
    keys = next(started for started in host.started if started.name == "keys")
    stop(keys)

    generation_ready = f"http://127.0.0.1:{host.http_ports['generation']}/readyz"
    generation_alive = f"http://127.0.0.1:{host.http_ports['generation']}/healthz"
    generation = next(s for s in host.started if s.name == "generation")
    wait_for(generation, generation_ready, expected=503)
    assert http_status(generation_alive) == 200


def test_worker_starts_with_generation_settings(host: HostStack) -> None:
    worker = host.run("worker", ["worker"], "generation")
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and "worker_started" not in worker.log_tail():
        assert worker.process.poll() is None, worker.log_tail()
        time.sleep(0.3)

    assert "worker_started" in worker.log_tail()
    assert worker.process.poll() is None
    stop(worker)
    assert worker.process.returncode == 0, worker.log_tail()
