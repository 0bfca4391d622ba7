"""Revocation with several generation processes that cache verifications.

Besides the stack's own generation process (reached through nginx and
directly on its port), a second process is started here on a spare port and
reached directly. Each process caches the key after its first request, and
every one must reject the key on the request right after it is deleted,
deactivated or expired.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from stack import GENERATION_HTTP, Stack

# Offset of the second generation process from TEST_PORT_BASE; offsets 20 to
# 60 are free for extra processes.
SECOND_GENERATION_OFFSET = 21


@pytest.fixture(scope="module")
def second_generation(stack: Stack) -> Iterator[str]:
    """Start a second generation process and return its base URL."""
    [spec] = [spec for spec in stack.service_specs() if spec.name == "generation"]
    port = stack.profile.port(SECOND_GENERATION_OFFSET)
    base_url = f"http://127.0.0.1:{port}"
    spec = replace(
        spec,
        name="generation-keys-test",
        env={**spec.env, "HTTP_PORT": str(port)},
        health_url=f"{base_url}/healthz",
        ready_url=f"{base_url}/readyz",
    )
    stack.start(spec)
    try:
        stack.wait_healthy(spec)
        yield base_url
    finally:
        stack.stop(spec.name)


@pytest.fixture
def processes(stack: Stack, second_generation: str) -> dict[str, str]:
    """Base URLs of two generation processes, each reached directly."""
    return {
        "stack process": f"http://127.0.0.1:{stack.profile.port(GENERATION_HTTP)}",
        "second process": second_generation,
    }


def verification_count(stack: Stack, key_id: str) -> int:
    """Count the VerifyKey calls that the keys service logged for a key."""
    count = 0
    for line in (stack.log_dir / "keys.log").read_text().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("event") == "api_key_verified" and record["key_id"] == key_id:
            count += 1
    return count


def generate(base_url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/v1/images/generations",
        headers={"X-API-Key": key},
        json={"prompt": "a paper boat", "size": "256x256"},
        timeout=60,
    )


def test_deleted_key_rejected_by_every_process(
    stack,
    client,
    gateway_url,
    processes,
    new_user,
    create_key,
    new_provider,
    simulator_base,
):
    new_provider(simulator_base(tag=f"revoke-{uuid.uuid4().hex[:8]}"))
    user = new_user()
    created = create_key(user)

    for name, base_url in processes.items():
        response = generate(base_url, created["key"])
        assert response.status_code == 200, f"{name}: {response.text}"
    verified_once = verification_count(stack, created["id"])
    assert verified_once == len(processes)
    for name, base_url in processes.items():
        response = generate(base_url, created["key"])
        assert response.status_code == 200, f"{name}: {response.text}"
    # No new verification: the second requests were served from the caches.
    assert verification_count(stack, created["id"]) == verified_once

    deleted = client.delete(f"/api/v1/keys/{created['id']}", headers=user.headers)
    assert deleted.status_code == 200, deleted.text

    for name, base_url in {**processes, "through nginx": gateway_url}.items():
        response = generate(base_url, created["key"])
        assert response.status_code == 401, f"{name}: {response.text}"
        assert response.json()["error"]["type"] == "authentication_error", name


def test_deactivated_key_rejected_by_every_process(
    stack, client, processes, new_user, create_key, probe
):
    user = new_user()
    created = create_key(user)
    path = f"/api/v1/keys/{created['id']}"
    for _ in range(2):
        for name, base_url in processes.items():
            assert probe(created["key"], base_url).status_code == 404, name
    assert verification_count(stack, created["id"]) == len(processes)

    client.put(path, json={"isActive": False}, headers=user.headers)
    for name, base_url in processes.items():
        assert probe(created["key"], base_url).status_code == 401, name

    client.put(path, json={"isActive": True}, headers=user.headers)
    for name, base_url in processes.items():
        assert probe(created["key"], base_url).status_code == 404, name


def test_scope_change_reaches_every_process(
    client, processes, new_user, create_key, probe
):
    user = new_user()
    created = create_key(user)
    for name, base_url in processes.items():
        assert probe(created["key"], base_url).status_code == 404, name

    changed = client.put(
        f"/api/v1/keys/{created['id']}",
        json={"scopes": ["images:generate"]},
        headers=user.headers,
    )
    assert changed.status_code == 200, changed.text
    for name, base_url in processes.items():
        response = probe(created["key"], base_url)
        assert response.status_code == 403, f"{name}: {response.text}"


def test_expired_key_rejected_by_every_process(processes, new_user, create_key, probe):
    user = new_user()
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    created = create_key(user, expiresAt=expires_at.isoformat())
    for name, base_url in processes.items():
        assert probe(created["key"], base_url).status_code == 404, name

    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.3)
    for name, base_url in processes.items():
        assert probe(created["key"], base_url).status_code == 401, name
