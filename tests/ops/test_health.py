"""Readiness follows the database, and gRPC health reports NOT_SERVING while a
service drains its in-flight requests."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stack import Stack
from tests.ops.helpers import (
    DRAINING_KEYS_GRPC,
    DRAINING_KEYS_HTTP,
    READINESS_AUTH,
    READINESS_POSTGRES,
    derived_spec,
    running,
    wait_exit,
)


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    return Path(found[-1]).parent


def _as_postgres_user() -> list[str]:
    # initdb refuses to run as root, so root runs it as the postgres account.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def throwaway_postgres(port: int) -> Iterator[tuple[str, int]]:
    """Run a fresh Postgres on `port` in a temporary folder; yield its URL and PID.

    The server is stopped by its own PID, never by name.
    """
    binaries = _postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="ir-ops-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    prefix = _as_postgres_user()
    subprocess.run(
        [
            *prefix,
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    log = open(folder / "postgres.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            *prefix,
            str(binaries / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(folder),
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    try:
        pid = _wait_postmaster(data, port, server, folder / "postgres.log")
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", pid
    finally:
        pid_file = data / "postmaster.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_postmaster(
    data: Path, port: int, server: subprocess.Popen[bytes], log: Path
) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        pid_file = data / "postmaster.pid"
        if pid_file.exists():
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return int(pid_file.read_text().split()[0])
        time.sleep(0.1)
    output = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(
        f"the throwaway Postgres did not start on port {port}; its log:\n{output}"
    )


def test_readiness_follows_postgres(stack: Stack) -> None:
    http_port = stack.profile.port(READINESS_AUTH)
    with throwaway_postgres(stack.profile.port(READINESS_POSTGRES)) as (url, pid):
        spec = derived_spec(
            stack, "auth", "ops-auth-readiness", http_port, DATABASE_URL=url
        )
        with running(stack, spec):
            ready = httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=10)
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"database": True, "redis": True}

            # Fast shutdown: it disconnects the service's pooled connections.
            os.kill(pid, signal.SIGINT)
            _wait_gone(pid)
            not_ready = httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=10)
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"] == {"database": False, "redis": True}
            alive = httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=10)
            assert alive.status_code == 200


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise RuntimeError(f"Postgres {pid} did not stop")


async def _health_status(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        return response.status


def test_grpc_health_not_serving_while_draining(stack: Stack) -> None:
    http_port = stack.profile.port(DRAINING_KEYS_HTTP)
    grpc_address = f"127.0.0.1:{stack.profile.port(DRAINING_KEYS_GRPC)}"
    spec = derived_spec(
        stack,
        "keys",
        "ops-keys-draining",
        http_port,
        GRPC_PORT=str(stack.profile.port(DRAINING_KEYS_GRPC)),
    )
    with running(stack, spec) as pid:
        serving = asyncio.run(_health_status(grpc_address))
        assert serving == health_pb2.HealthCheckResponse.SERVING

        # A request whose body is still arriving keeps the service draining.
        body = b'{"name": "draining"}'
        connection = socket.create_connection(("127.0.0.1", http_port), timeout=15)
        with connection:
            connection.sendall(
                b"POST /api/v1/keys HTTP/1.1\r\nHost: keys\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:5]
            )
            time.sleep(0.3)
            os.kill(pid, signal.SIGTERM)
            time.sleep(0.5)

            draining = asyncio.run(_health_status(grpc_address))
            assert draining == health_pb2.HealthCheckResponse.NOT_SERVING

            connection.sendall(body[5:])
            answer = connection.recv(4096).decode(errors="replace")
        # No credentials, so 401: the in-flight request still gets its response.
        assert answer.startswith("HTTP/1.1 401"), answer
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert wait_exit(stack, spec.name) in (0, -signal.SIGTERM)
