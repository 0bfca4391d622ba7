"""No secret reaches a log line or a response body, on any path.

The test plants a provider secret, a user password and an API key. It drives
successes, every provider failure, login failures and key deletion. Then it
searches every log file of the stack and every response body for the planted
values, the key's HMAC hash and the provider secret's Fernet token.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from stack import Stack
from tests.fixtures import User


def _fetch_value(database_url: str, query: str, value: uuid.UUID) -> Any:
    async def run() -> Any:
        connection = await asyncpg.connect(
            database_url.replace("postgresql+asyncpg://", "postgresql://")
        )
        try:
            return await connection.fetchval(query, value)
        finally:
            await connection.close()

    return asyncio.run(run())


def test_no_secret_in_logs_or_responses(
    stack: Stack,
    client: httpx.Client,
    admin: User,
    fresh_registry: None,
    simulator_base: Callable[..., str],
) -> None:
    provider_secret = f"sk-planted-{uuid.uuid4().hex}"
    password = f"planted password {uuid.uuid4().hex}"
    wrong_password = f"wrong password {uuid.uuid4().hex}"
    bodies: list[str] = []

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = client.request(method, path, **kwargs)
        bodies.append(response.text)
        return response

    # A provider per path: success, 500, 429, time-out, content policy and a
    # credential the provider rejects. Priorities make each one the only
    # candidate when the request pins it by name.
    behaviours = {
        "ok": (),
        "error": ("fail=500",),
        "limited": ("rate_limit=1",),
        "slow": ("hang",),
        "refused": ("content_policy",),
        "bad-key": (f"key=other-{uuid.uuid4().hex}",),
    }
    providers: dict[str, dict[str, Any]] = {}
    for label, options in behaviours.items():
        response = call(
            "POST",
            "/api/v1/providers",
            json={
                "name": f"secret-{label}-{uuid.uuid4().hex[:6]}",
                "type": "openai",
                "apiKey": provider_secret,
                "baseUrl": simulator_base(*options),
                "priority": 1,
                "costPerImage": "0.01",
                "supportedSizes": ["256x256"],
                "maxImagesPerRequest": 10,
                "timeout": 1000,
            },
            headers=admin.headers,
        )
        assert response.status_code == 201, response.text
        providers[label] = response.json()["data"]
    fernet_token = _fetch_value(
        stack.profile.database_url,
        "SELECT api_key_encrypted FROM providers.providers WHERE id = $1",
        uuid.UUID(providers["ok"]["id"]),
    ).decode()
    for provider in providers.values():
        call("GET", f"/api/v1/providers/{provider['id']}", headers=admin.headers)
    call("GET", "/api/v1/providers", headers=admin.headers)

    email = f"planted-{uuid.uuid4().hex[:10]}@test.example"
    assert (
        call(
            "POST",
            "/api/v1/users/register",
            json={"email": email, "password": password},
        ).status_code
        == 201
    )
    for attempt in (wrong_password, password.upper()):
        response = call(
            "POST", "/api/v1/users/login", json={"email": email, "password": attempt}
        )
        assert response.status_code == 401
    response = call(
        "POST", "/api/v1/users/login", json={"email": email, "password": password}
    )
    assert response.status_code == 200
    token = response.json()["data"]["token"]
    user_headers = {"Authorization": f"Bearer {token}"}

    response = call(
        "POST", "/api/v1/keys", json={"name": "planted"}, headers=user_headers
    )
    assert response.status_code == 201
    api_key = response.json()["data"]["key"]
    key_id = response.json()["data"]["id"]
    key_hash = _fetch_value(
        stack.profile.database_url,
        "SELECT key_hash FROM keys.api_keys WHERE id = $1",
        uuid.UUID(key_id),
    )

    # A 429 pauses the provider, so the second request finds none available.
    expected = {
        "ok": {200},
        "error": {502},
        "limited": {502, 503},
        "slow": {502},
        "refused": {400},
        "bad-key": {502},
    }
    for label, provider in providers.items():
        for path, headers in (
            ("/api/v1/images/generations", {"X-API-Key": api_key}),
            ("/v1/images/generations", {"Authorization": f"Bearer {api_key}"}),
        ):
            response = call(
                "POST",
                path,
                json={
                    "prompt": "a locked door",
                    "size": "256x256",
                    "provider": provider["name"],
                },
                headers=headers,
            )
            assert response.status_code in expected[label], (label, response.text)
    call("GET", "/api/v1/images/generations", headers={"X-API-Key": api_key})
    call("GET", f"/api/v1/keys/{key_id}", headers=user_headers)

    assert (
        call("DELETE", f"/api/v1/keys/{key_id}", headers=user_headers).status_code
        == 200
    )
    response = call(
        "POST",
        "/api/v1/images/generations",
        json={"prompt": "after deletion", "size": "256x256"},
        headers={"X-API-Key": api_key},
    )
    assert response.status_code == 401
    response = call(
        "PUT",
        "/api/v1/users/password",
        json={"currentPassword": wrong_password, "newPassword": password + "!"},
        headers=user_headers,
    )
    assert response.status_code in (400, 401, 403)

    planted = {
        "provider secret": provider_secret,
        "password": password,
        "wrong password": wrong_password,
        "API key": api_key,
        "API key hash": key_hash,
        "provider secret's Fernet token": fernet_token,
        "user token": token,
        **{name: value for name, value in stack.secrets().items() if value},
    }
    logs = {
        path.name: path.read_text(errors="replace")
        for path in stack.log_dir.glob("*.log")
    }
    assert {"auth.log", "keys.log", "providers.log", "generation.log"} <= set(logs)
    for label, value in planted.items():
        for name, text in logs.items():
            assert value not in text, f"the {label} is in {name}"
    # Responses may show the API key once, when it is created, and the token
    # at login; nothing else.
    shown_once = {"API key": api_key, "user token": token}
    for label, value in planted.items():
        allowed = 1 if label in shown_once else 0
        found = sum(value in body for body in bodies)
        assert found == allowed, f"the {label} is in {found} response bodies"
