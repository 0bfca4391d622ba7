"""Tracing is off without an OTLP endpoint, and an unreachable collector does
not stop a service from starting and serving."""

from __future__ import annotations

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from router_common.tracing import configure_tracing
from stack import Stack
from tests.ops.helpers import (
    TRACING_AUTH,
    TRACING_COLLECTOR,
    derived_spec,
    json_lines,
    records_with,
    running,
)


def test_tracing_off_without_endpoint() -> None:
    enabled = configure_tracing("ops-test", "")

    assert enabled is False
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


def test_stack_services_run_without_tracing(stack: Stack) -> None:
    for name in ("auth", "keys", "providers", "generation", "worker"):
        assert records_with(stack, f"{name}.log", event="tracing_enabled") == []


def test_unreachable_collector_still_serves(stack: Stack) -> None:
    port = stack.profile.port(TRACING_AUTH)
    # Nothing listens on this port, so every export fails.
    collector = f"http://127.0.0.1:{stack.profile.port(TRACING_COLLECTOR)}"
    spec = derived_spec(
        stack,
        "auth",
        "ops-auth-tracing",
        port,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector,
    )

    with running(stack, spec):
        login = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/users/login",
            json={"email": "nobody@test.example", "password": "not a password"},
            timeout=10,
        )
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)

    assert login.status_code == 401
    assert login.json()["error"]["type"] == "authentication_error"
    assert ready.status_code == 200
    records = json_lines(stack.log_dir / "ops-auth-tracing.log")
    enabled = [record for record in records if record["event"] == "tracing_enabled"]
    assert [record["endpoint"] for record in enabled] == [collector]
