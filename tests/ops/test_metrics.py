"""Prometheus metrics: served on every service's own port, never through
nginx, and moving with the traffic they describe."""

from __future__ import annotations

import http.client
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from stack import Stack
from tests.fixtures import PASSWORD, User
from tests.ops.helpers import (
    SERVICE_PORTS,
    generation_total,
    sample_value,
    scrape,
    start_healthy,
)

# Spellings a client could try to reach a service's /metrics through nginx.
METRICS_SPELLINGS = [
    "/metrics",
    "/metrics/",
    "//metrics",
    "/metrics?format=text",
    "/api/v1/metrics",
    "/api/v1/users/metrics",
    "/api/v1/users/../../../metrics",
    "/api/v1/users/%2e%2e/%2e%2e/%2e%2e/metrics",
    "/api/v1/keys/..%2f..%2f..%2fmetrics",
    "/api/v1/providers/%252e%252e/%252e%252e/%252e%252e/metrics",
    "/api/v1/providers/./../../../metrics",
    "/api/v1/images/%2E%2E/%2E%2E/%2E%2E/metrics",
    "/v1/../metrics",
    "/v1/images/%2e%2e/%2e%2e/metrics",
]


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
def test_metrics_served_per_service(stack: Stack, service: str) -> None:
    port = stack.profile.port(SERVICE_PORTS[service])

    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE process_cpu_seconds_total counter" in response.text
    if service != "worker":
        assert "# TYPE http_requests_total counter" in response.text


@pytest.mark.parametrize("path", METRICS_SPELLINGS)
def test_metrics_not_routed_by_nginx(stack: Stack, path: str) -> None:
    # http.client sends the path exactly as written, dot segments included.
    connection = http.client.HTTPConnection("127.0.0.1", stack.profile.nginx_port)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
    finally:
        connection.close()

    assert response.status in (400, 404), body
    assert "# HELP" not in body
    assert "http_requests_total" not in body


def test_http_metrics_by_route_template(
    stack: Stack, client: httpx.Client, admin: User
) -> None:
    port = stack.profile.port(SERVICE_PORTS["providers"])
    labels = {"route": "/api/v1/providers/{provider_id}", "status": "404"}
    before = sample_value(scrape(port), "http_requests_total", **labels)

    missing = f"/api/v1/providers/{uuid.uuid4()}"
    response = client.get(missing, headers=admin.headers)

    assert response.status_code == 404
    samples = scrape(port)
    assert sample_value(samples, "http_requests_total", **labels) == before + 1
    assert not any(missing in str(key) for key in samples)


def test_generation_moves_provider_metrics(
    stack: Stack,
    client: httpx.Client,
    new_user: Callable[[], User],
    new_provider: Callable[..., dict[str, Any]],
    simulator_base: Callable[..., str],
) -> None:
    failing = new_provider(simulator_base("fail=500"), priority=1)
    working = new_provider(simulator_base(), priority=2, costPerImage="0.025")
    user = new_user()

    response = client.post(
        "/api/v1/images/generations",
        json={"prompt": "a kite", "n": 2, "size": "256x256"},
        headers=user.headers,
    )

    assert response.status_code == 200, response.text
    good, bad = working["name"], failing["name"]
    attempts = "provider_attempts_total"
    assert generation_total(stack, attempts, provider=good, outcome="success") == 1
    assert generation_total(stack, attempts, provider=bad, outcome="error") == 1
    latency = "provider_attempt_duration_seconds_count"
    assert generation_total(stack, latency, provider=good, outcome="success") == 1
    assert generation_total(stack, "provider_fallbacks_total", provider=bad) == 1
    assert generation_total(stack, "images_generated_total", provider=good) == 2
    cost = generation_total(stack, "generation_cost_total", provider=good)
    assert Decimal(str(cost)) == Decimal("0.05")
    assert generation_total(stack, "images_generated_total", provider=bad) == 0


def test_circuit_state_per_provider(
    stack: Stack,
    client: httpx.Client,
    new_user: Callable[[], User],
    new_provider: Callable[..., dict[str, Any]],
    simulator_base: Callable[..., str],
) -> None:
    provider = new_provider(simulator_base("fail=500"))
    port = stack.profile.port(SERVICE_PORTS["providers"])
    name = provider["name"]
    samples = scrape(port)
    assert (
        sample_value(samples, "provider_circuit_state", provider=name, state="closed")
        == 1
    )
    assert (
        sample_value(samples, "provider_circuit_state", provider=name, state="open")
        == 0
    )
    user = new_user()

    # The registry's default threshold is 5 consecutive failures.
    for _ in range(5):
        response = client.post(
            "/api/v1/images/generations",
            json={"prompt": "a storm", "size": "256x256"},
            headers=user.headers,
        )
        assert response.status_code == 502, response.text

    samples = _wait_circuit(port, name, "open")
    assert (
        sample_value(samples, "provider_circuit_state", provider=name, state="open")
        == 1
    )
    assert (
        sample_value(samples, "provider_circuit_state", provider=name, state="closed")
        == 0
    )


def _wait_circuit(port: int, name: str, state: str) -> dict[Any, float]:
    # Outcomes are reported to the registry off the request's critical path.
    deadline = time.monotonic() + 5
    while True:
        samples = scrape(port)
        value = sample_value(
            samples, "provider_circuit_state", provider=name, state=state
        )
        if value == 1 or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def test_rate_limit_rejections_counted(
    stack: Stack,
    client: httpx.Client,
    new_user: Callable[[], User],
    new_api_key: Callable[..., str],
    new_provider: Callable[..., dict[str, Any]],
    simulator_base: Callable[..., str],
) -> None:
    new_provider(simulator_base())
    key = new_api_key(new_user(), rateLimit=1)
    labels = {"service": "generation", "limit": "api_key_requests"}
    before = generation_total(stack, "rate_limit_rejections_total", **labels)

    statuses = []
    for _ in range(2):
        response = client.post(
            "/api/v1/images/generations",
            json={"prompt": "a bell", "size": "256x256"},
            headers={"X-API-Key": key},
        )
        statuses.append(response.status_code)

    assert statuses == [200, 429]
    assert (
        generation_total(stack, "rate_limit_rejections_total", **labels) == before + 1
    )


def test_login_throttle_counted(
    stack: Stack, client: httpx.Client, new_user: Callable[[], User]
) -> None:
    user = new_user()
    port = stack.profile.port(SERVICE_PORTS["auth"])
    labels = {"service": "auth", "limit": "login"}
    before = sample_value(scrape(port), "rate_limit_rejections_total", **labels)

    statuses = []
    for _ in range(6):
        response = client.post(
            "/api/v1/users/login",
            json={"email": user.email, "password": PASSWORD + " wrong"},
        )
        statuses.append(response.status_code)

    assert statuses == [401] * 5 + [429]
    after = sample_value(scrape(port), "rate_limit_rejections_total", **labels)
    assert after == before + 1


def test_queue_depth_and_age(
    stack: Stack,
    client: httpx.Client,
    new_user: Callable[[], User],
    new_provider: Callable[..., dict[str, Any]],
    simulator_base: Callable[..., str],
) -> None:
    new_provider(simulator_base())
    user = new_user()
    worker = next(spec for spec in stack.service_specs() if spec.name == "worker")
    worker_port = stack.profile.port(SERVICE_PORTS["worker"])
    stack.stop("worker")
    try:
        response = client.post(
            "/api/v1/images/generations",
            json={"prompt": "a queue", "size": "256x256", "async": True},
            headers=user.headers,
        )
        assert response.status_code == 202, response.text
        time.sleep(1.1)

        api = scrape(stack.profile.port(SERVICE_PORTS["generation"]))
        assert sample_value(api, "generation_jobs_queued") >= 1
        age = sample_value(api, "generation_oldest_queued_job_age_seconds")
        assert age >= 1
    finally:
        start_healthy(stack, worker)

    generation_id = response.json()["data"]["id"]
    _wait_succeeded(client, user, generation_id)
    samples = scrape(worker_port)
    assert sample_value(samples, "generation_jobs_queued") == 0
    assert sample_value(samples, "generation_oldest_queued_job_age_seconds") == 0


def test_worker_health_endpoint(stack: Stack) -> None:
    port = stack.profile.port(SERVICE_PORTS["worker"])

    response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def _wait_succeeded(client: httpx.Client, user: User, generation_id: str) -> None:
    deadline = time.monotonic() + 30
    status = ""
    while time.monotonic() < deadline:
        response = client.get(
            f"/api/v1/images/generations/{generation_id}", headers=user.headers
        )
        status = response.json()["data"]["status"]
        if status in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert status == "succeeded"
