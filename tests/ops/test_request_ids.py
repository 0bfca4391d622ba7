"""One request id follows a request through nginx, every service and the
provider call, and on into the worker that runs an asynchronous job."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from stack import Stack
from tests.fixtures import User
from tests.ops.helpers import new_request_id, records_with, wait_for_records


def test_request_id_crosses_every_hop(
    stack: Stack,
    client: httpx.Client,
    new_user: Callable[[], User],
    new_api_key: Callable[..., str],
    new_provider: Callable[..., dict[str, Any]],
    simulator_base: Callable[..., str],
    simulator_calls: Callable[[str], dict[str, Any]],
) -> None:
    tag = f"rid-{uuid.uuid4().hex[:8]}"
    new_provider(simulator_base(tag=tag))
    key = new_api_key(new_user())
    request_id = new_request_id()

    response = client.post(
        "/api/v1/images/generations",
        json={"prompt": "a lighthouse", "size": "256x256"},
        headers={"X-API-Key": key, "X-Request-ID": request_id},
    )

    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id
    nginx = wait_for_records(stack, "nginx-access.log", bool, request_id=request_id)
    assert [record["path"] for record in nginx] == ["/api/v1/images/generations"]
    generation = wait_for_records(
        stack,
        "generation*.log",
        lambda found: any(r["event"] == "request" for r in found),
        request_id=request_id,
    )
    events = {record["event"] for record in generation}
    assert {"request", "provider_attempt"} <= events
    registry = records_with(stack, "providers.log", request_id=request_id)
    methods = {record.get("method") for record in registry if record["event"] == "rpc"}
    assert "/imagerouter.v1.ProviderRegistry/SelectProviders" in methods
    # Outcome reports travel in batches; each entry names its own request.
    outcomes = wait_for_records(
        stack,
        "providers.log",
        lambda found: any(r["event"] == "provider_outcome" for r in found),
        request_id=request_id,
    )
    assert [record["outcome"] for record in outcomes if "outcome" in record] == [
        "success"
    ]
    keys = records_with(stack, "keys.log", request_id=request_id, event="rpc")
    assert [record["method"] for record in keys] == [
        "/imagerouter.v1.KeyService/VerifyKey"
    ]
    calls = simulator_calls(tag)
    assert calls["count"] == 1
    assert calls["requests"][-1]["headers"]["x-request-id"] == request_id


def test_request_id_minted_by_nginx(client: httpx.Client, stack: Stack) -> None:
    response = client.post(
        "/api/v1/users/login",
        json={"email": "nobody@test.example", "password": "wrong password"},
        headers={"X-Request-ID": "bad id with spaces"},
    )

    minted = response.headers["x-request-id"]
    assert minted != "bad id with spaces"
    assert len(minted) == 32
    auth = wait_for_records(
        stack,
        "auth.log",
        lambda found: any(r["event"] == "request" for r in found),
        request_id=minted,
    )
    assert "request" in [record["event"] for record in auth]


def test_worker_logs_creating_request_id(
    stack: Stack,
    client: httpx.Client,
    new_user: Callable[[], User],
    new_provider: Callable[..., dict[str, Any]],
    simulator_base: Callable[..., str],
    simulator_calls: Callable[[str], dict[str, Any]],
) -> None:
    tag = f"rid-async-{uuid.uuid4().hex[:8]}"
    new_provider(simulator_base(tag=tag))
    user = new_user()
    request_id = new_request_id()

    response = client.post(
        "/api/v1/images/generations",
        json={"prompt": "a harbour", "size": "256x256", "async": True},
        headers={**user.headers, "X-Request-ID": request_id},
    )

    assert response.status_code == 202, response.text
    generation_id = response.json()["data"]["id"]
    status = _wait_finished(client, user, generation_id)
    assert status == "succeeded"
    worker = wait_for_records(
        stack,
        "worker.log",
        lambda found: any(r["event"] == "job_finished" for r in found),
        generation_id=generation_id,
    )
    events = {record["event"] for record in worker}
    assert {"provider_attempt", "job_finished"} <= events
    assert {record.get("request_id") for record in worker} == {request_id}
    assert simulator_calls(tag)["requests"][-1]["headers"]["x-request-id"] == (
        request_id
    )


def _wait_finished(client: httpx.Client, user: User, generation_id: str) -> str:
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
    return status
