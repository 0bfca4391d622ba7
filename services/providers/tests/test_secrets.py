"""The provider's API key: encrypted at rest, rotatable, and never shown."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

import asyncpg
import pytest
import redis
from cryptography.fernet import Fernet, InvalidToken

from providers_service.row_cache import ROWS_VERSION_KEY
from providers_service.settings import Settings
from stack import ROOT, VENV_PYTHON
from tests.fixtures import run_sql


def stored_tokens(database_url: str) -> dict[str, bytes]:
    async def read() -> dict[str, bytes]:
        connection = await asyncpg.connect(
            database_url.replace("postgresql+asyncpg://", "postgresql://")
        )
        try:
            rows = await connection.fetch(
                "SELECT name, api_key_encrypted FROM providers.providers"
            )
        finally:
            await connection.close()
        return {row["name"]: bytes(row["api_key_encrypted"]) for row in rows}

    return asyncio.run(read())


def test_secret_never_leaves_the_service(
    stack,
    client,
    admin,
    new_provider,
    new_user,
    new_api_key,
    simulator_base,
    simulator_calls,
):
    secret = f"sk-live-{uuid.uuid4().hex}"
    tag = f"secret-{uuid.uuid4().hex[:8]}"
    # No `key=` option: it would put the secret in the base URL itself.
    provider = new_provider(simulator_base(tag=tag), apiKey=secret)
    provider_id = provider["id"]
    bodies = [str(provider)]

    def record(response) -> dict:
        bodies.append(response.text)
        return response.json()

    assert provider["apiKeyHint"] == "…" + secret[-4:]
    assert stored_tokens(stack.profile.database_url)[provider["name"]] != secret

    key = new_api_key(new_user())
    generated = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": key},
        json={"prompt": "a mill", "size": "256x256"},
    )
    assert generated.status_code == 200, generated.text
    assert simulator_calls(tag)["count"] == 1

    headers = admin.headers
    record(client.get("/api/v1/providers", headers=headers))
    record(client.get(f"/api/v1/providers/{provider_id}", headers=headers))
    updated = record(
        client.put(
            f"/api/v1/providers/{provider_id}", json={"priority": 4}, headers=headers
        )
    )
    assert updated["data"]["apiKeyHint"] == "…" + secret[-4:]
    # Invalid bodies that carry the secret: the error must not echo it.
    record(
        client.put(
            f"/api/v1/providers/{provider_id}",
            json={"apiKey": secret * 20},
            headers=headers,
        )
    )
    record(
        client.put(
            f"/api/v1/providers/{provider_id}",
            json={"apiKey": [secret]},
            headers=headers,
        )
    )
    record(
        client.post(
            "/api/v1/providers",
            json={**provider, "apiKey": secret, "name": provider["name"]},
            headers=headers,
        )
    )
    record(
        client.post(
            "/api/v1/providers",
            json={"name": "x", "apiKey": secret, "baseUrl": secret},
            headers=headers,
        )
    )

    # A failing call; the provider's last error must not show the key either.
    record(
        client.put(
            f"/api/v1/providers/{provider_id}",
            json={"baseUrl": simulator_base("fail=500", tag=tag)},
            headers=headers,
        )
    )
    failed = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": key},
        json={"prompt": "a mill", "size": "256x256"},
    )
    assert failed.status_code == 502, failed.text
    bodies.append(failed.text)
    detail = record(client.get(f"/api/v1/providers/{provider_id}", headers=headers))
    assert detail["data"]["health"]["lastError"] is not None
    record(client.delete(f"/api/v1/providers/{provider_id}", headers=headers))

    for body in bodies:
        assert secret not in body
    for log_file in sorted(stack.log_dir.glob("*.log")):
        text = log_file.read_text(errors="replace")
        assert secret not in text, f"the provider secret is in {log_file.name}"


def test_put_without_api_key_keeps_it(
    client, admin, new_provider, new_user, new_api_key, simulator_base
):
    secret = f"sk-kept-{uuid.uuid4().hex}"
    # The simulator returns 401 unless it receives exactly this key.
    provider = new_provider(simulator_base(f"key={secret}"), apiKey=secret)
    key = new_api_key(new_user())

    def generate() -> int:
        response = client.post(
            "/api/v1/images/generations",
            headers={"X-API-Key": key},
            json={"prompt": "a mill", "size": "256x256"},
        )
        return response.status_code

    assert generate() == 200
    edited = client.put(
        f"/api/v1/providers/{provider['id']}",
        json={"priority": 4},
        headers=admin.headers,
    )
    assert edited.status_code == 200, edited.text
    assert generate() == 200
    replaced = client.put(
        f"/api/v1/providers/{provider['id']}",
        json={"apiKey": "sk-other-0123456789"},
        headers=admin.headers,
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["data"]["apiKeyHint"] == "…6789"
    assert generate() == 502


def rotate(stack, keys: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.common_env(), "PROVIDER_SECRET_KEYS": keys}
    return subprocess.run(
        [str(VENV_PYTHON), "-m", "providers_service", "rotate-secrets"],
        cwd=ROOT / "services" / "providers",
        env={**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_rotate_secrets_reencrypts_with_first_key(stack, new_provider, simulator_base):
    names = [new_provider(simulator_base(tag="rotate"))["name"] for _ in range(2)]
    old_key = stack.common_env()["PROVIDER_SECRET_KEYS"].split(",")[0]
    new_key = Fernet.generate_key().decode()
    before = stored_tokens(stack.profile.database_url)
    plain = {name: Fernet(old_key).decrypt(before[name]) for name in names}

    result = rotate(stack, f"{new_key},{old_key}")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 providers" in result.stdout
        after = stored_tokens(stack.profile.database_url)
        for name in names:
            assert Fernet(new_key).decrypt(after[name]) == plain[name]
            with pytest.raises(InvalidToken):
                Fernet(old_key).decrypt(after[name])
    finally:
        # Back to the key the running stack has.
        restored = rotate(stack, f"{old_key},{new_key}")
        assert restored.returncode == 0, restored.stdout + restored.stderr
    final = stored_tokens(stack.profile.database_url)
    for name in names:
        assert Fernet(old_key).decrypt(final[name]) == plain[name]


def test_rotate_secrets_without_old_key_changes_nothing(
    stack, new_provider, simulator_base
):
    name = new_provider(simulator_base(tag="rotate"))["name"]
    before = stored_tokens(stack.profile.database_url)[name]
    result = rotate(stack, Fernet.generate_key().decode())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Nothing changed" in result.stdout
    assert stored_tokens(stack.profile.database_url)[name] == before


def test_production_requires_secret_keys():
    production = {
        "environment": "production",
        "jwt_secret": "j" * 40,
        "internal_service_token": "t" * 40,
    }
    with pytest.raises(ValueError, match="PROVIDER_SECRET_KEYS"):
        Settings(**production)
    Settings(**production, provider_secret_keys=Fernet.generate_key().decode())


def test_unreadable_secret_makes_provider_unavailable(
    stack, client, new_user, new_provider, simulator_base
):
    provider = new_provider(simulator_base(tag="unreadable"))
    # As if the row had been written under a key that is no longer configured.
    foreign = Fernet(Fernet.generate_key()).encrypt(b"sk-lost")
    run_sql(
        stack.profile.database_url,
        "UPDATE providers.providers SET api_key_encrypted = "
        f"decode('{foreign.hex()}', 'hex') WHERE id = '{provider['id']}'",
    )
    # A write made in SQL is seen by the registries only once the rows version
    # they cache is cleared.
    with redis.Redis.from_url(stack.profile.redis_url) as store:
        store.delete(ROWS_VERSION_KEY)
    user = new_user()
    response = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "a lock", "size": "256x256"},
    )
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "no_provider_available"
