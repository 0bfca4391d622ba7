"""Start one simulator process for the whole session and talk to it over HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

PORT_RANGE = range(28100, 28200)
STARTUP_TIMEOUT_SECONDS = 20.0
SIMULATOR_DIR = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    for port in PORT_RANGE:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"No free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}.")


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Simulator exited with code {process.returncode}.")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"Simulator at {url} not healthy after {STARTUP_TIMEOUT_SECONDS}s."
    )


@pytest.fixture(scope="session")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run `python -m simulator` on a free port and stop it by PID afterwards."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("simulator") / "simulator.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--host", "127.0.0.1"]
            + ["--port", str(port), "--log-level", "debug"],
            cwd=SIMULATOR_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_healthy(url, process)
            yield url
        finally:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="session")
def client(simulator_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simulator_url, timeout=30.0) as session_client:
        yield session_client


@pytest.fixture
def tag(request: pytest.FixtureRequest) -> str:
    """Return a call-statistics tag unique to the running test."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)
    return f"{name[:48]}-{time.monotonic_ns() % 1_000_000}"
