"""What the operations tests share: log readers, metric scrapes, extra processes.

Extra processes use ports TEST_PORT_BASE + 70 to + 78, one fixed offset per
test, so that no two of them collide and none meets the stack's own ports.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from stack import (
    AUTH_HTTP,
    GENERATION_HTTP,
    KEYS_HTTP,
    PROVIDERS_HTTP,
    WORKER_METRICS_HTTP,
    ServiceSpec,
    Stack,
)

# Offsets past TEST_PORT_BASE of the processes these tests start.
# Other suites use offsets 43 to 62, so these start at 70.
READINESS_POSTGRES, READINESS_AUTH = 70, 71
DRAINING_KEYS_HTTP, DRAINING_KEYS_GRPC = 72, 73
SIGTERM_GENERATION = 74
SIGTERM_WORKER_METRICS = 75
TRACING_AUTH, TRACING_COLLECTOR = 76, 77
DEBUG_GENERATION = 78

SERVICE_PORTS = {
    "auth": AUTH_HTTP,
    "keys": KEYS_HTTP,
    "generation": GENERATION_HTTP,
    "providers": PROVIDERS_HTTP,
    "worker": WORKER_METRICS_HTTP,
}


def new_request_id() -> str:
    return f"ops-{uuid.uuid4().hex}"


# -- logs ----------------------------------------------------------------------


def log_files(stack: Stack, pattern: str = "*.log") -> list[Path]:
    return sorted(stack.log_dir.glob(pattern))


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Return the JSON objects of a log file; other lines are skipped."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def records_with(stack: Stack, pattern: str, **fields: Any) -> list[dict[str, Any]]:
    """Return the log records of the matching files whose fields equal `fields`."""
    found = []
    for path in log_files(stack, pattern):
        for record in json_lines(path):
            if all(record.get(name) == value for name, value in fields.items()):
                found.append(record)
    return found


def wait_for_records(
    stack: Stack,
    pattern: str,
    condition: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 10.0,
    **fields: Any,
) -> list[dict[str, Any]]:
    """Poll the logs until `condition` holds for the matching records.

    Services write a request's line after its response has been sent, so a
    test that reads logs right after a response has to wait a moment.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = records_with(stack, pattern, **fields)
        if condition(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


# -- metrics -------------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of a `/metrics` page, keyed by name and labels."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return samples


def sample_value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
    **labels: str,
) -> float:
    """Return the sum of the samples named `name` whose labels include `labels`."""
    total = 0.0
    for (sample_name, sample_labels), value in samples.items():
        present = dict(sample_labels)
        if sample_name == name and all(
            present.get(label) == wanted for label, wanted in labels.items()
        ):
            total += value
    return total


def generation_total(stack: Stack, name: str, **labels: str) -> float:
    """Sum a generation metric over every API replica behind nginx."""
    return sum(
        sample_value(scrape(port), name, **labels)
        for port in stack.generation_replica_ports()
    )


# -- extra processes -----------------------------------------------------------


def derived_spec(
    stack: Stack, base: str, name: str, http_port: int, **env: str
) -> ServiceSpec:
    """Copy one of the stack's process specs under a new name and port."""
    spec = next(spec for spec in stack.service_specs() if spec.name == base)
    health = f"http://127.0.0.1:{http_port}/healthz"
    ready = f"http://127.0.0.1:{http_port}/readyz" if spec.ready_url else None
    return replace(
        spec,
        name=name,
        env={**spec.env, "HTTP_PORT": str(http_port), **env},
        health_url=health,
        ready_url=ready,
    )


def start_healthy(stack: Stack, spec: ServiceSpec) -> int:
    """Start a process and wait until it is healthy; return its PID."""
    pid = stack.start(spec)
    # `Stack.running_pid` recognises a child by the marker in its environment,
    # which /proc shows only once the child has exec'd its program.
    deadline = time.monotonic() + 5
    while stack.running_pid(spec.name) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    stack.wait_healthy(spec)
    return pid


@contextmanager
def running(stack: Stack, spec: ServiceSpec) -> Iterator[int]:
    """Start an extra process, wait until it is healthy, and stop it at the end."""
    try:
        yield start_healthy(stack, spec)
    finally:
        stack.stop(spec.name)


def wait_exit(stack: Stack, name: str, timeout: float = 30.0) -> int:
    """Wait for a process this stack started to exit; return its exit code."""
    process = stack.processes[name]
    return process.wait(timeout=timeout)
