"""Fixtures shared by every test: one real stack per test session, and helpers
that create fresh users, keys and providers so that tests never share data.

The stack is the `test` profile of deploy/local/stack.py: its own ports, its own
database (created anew for each session) and its own Redis database, so it never
collides with a running `make run`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from stack import Stack, _profiles, ensure_database

# Light argon2 parameters and short windows keep the suite fast; every service
# reads them from its environment.
TEST_SETTINGS = {
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_COST_KIB": "1024",
    "ARGON2_PARALLELISM": "1",
    "ADMIN_EMAIL": "admin@test.example",
    # Auth attempt limits: the per-account limit keeps its production value of
    # 5 with a 3-second window, so a test can wait a lockout out. The
    # per-address limits are lifted because every test connects from 127.0.0.1.
    "LOGIN_ACCOUNT_WINDOW_SECONDS": "3",
    "LOGIN_ADDRESS_FAILURE_LIMIT": "100000",
    "REGISTRATION_ADDRESS_LIMIT": "100000",
    "GENERATION_DEADLINE_SECONDS": "60",
    # Provider circuit breaker and pauses, short enough to watch in a test.
    "CIRCUIT_COOLDOWN_SECONDS": "2",
    "CIRCUIT_TRIAL_SECONDS": "5",
    "RATE_LIMITED_PAUSE_SECONDS": "2",
    # Request limits use a 10-second window, so a test can watch one reset;
    # nginx's per-address guard is lifted, since every test comes from 127.0.0.1.
    "RATE_LIMIT_WINDOW_SECONDS": "10",
    "USER_REQUESTS_PER_MINUTE": "1000",
    "IR_RATE_PER_SECOND": "100000",
    "IR_RATE_BURST": "100000",
    # Short leases and polls, so that a killed worker's job is resumed quickly.
    "JOB_LEASE_SECONDS": "3",
    "WORKER_POLL_SECONDS": "0.2",
    # Keys: last-use times reach the database within a second.
    "LAST_USED_FLUSH_SECONDS": "1",
}
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    stack = Stack(_profiles()["test"], overrides=dict(TEST_SETTINGS))
    stack.down()
    ensure_database(stack.profile.database_url, recreate=True)
    redis.Redis.from_url(stack.profile.redis_url).flushdb()
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def gateway_url(stack: Stack) -> str:
    return stack.public_base_url


@pytest.fixture
def client(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=90) as client:
        yield client


@pytest.fixture(scope="session")
def admin(stack: Stack) -> User:
    env = stack.common_env()
    with httpx.Client(base_url=stack.public_base_url, timeout=30) as client:
        response = client.post(
            "/api/v1/users/login",
            json={"email": env["ADMIN_EMAIL"], "password": env["ADMIN_PASSWORD"]},
        )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    return User(id=data["user"]["id"], email=data["user"]["email"], token=data["token"])


@pytest.fixture
def new_user(client: httpx.Client) -> Callable[[], User]:
    """Register and log in a fresh user."""

    def create() -> User:
        email = f"user-{uuid.uuid4().hex[:12]}@test.example"
        response = client.post(
            "/api/v1/users/register", json={"email": email, "password": PASSWORD}
        )
        assert response.status_code == 201, response.text
        response = client.post(
            "/api/v1/users/login", json={"email": email, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        return User(id=data["user"]["id"], email=email, token=data["token"])

    return create


@pytest.fixture
def new_api_key(client: httpx.Client) -> Callable[..., str]:
    """Create an API key for a user and return the full key."""

    def create(user: User, **fields: Any) -> str:
        body = {"name": f"key-{uuid.uuid4().hex[:8]}", **fields}
        response = client.post("/api/v1/keys", json=body, headers=user.headers)
        assert response.status_code == 201, response.text
        return response.json()["data"]["key"]

    return create


@pytest.fixture
def simulator_base(stack: Stack) -> Callable[..., str]:
    """Build a simulator base URL whose behaviour is set by its options."""

    def build(*options: str, tag: str | None = None, api: str = "/v1") -> str:
        parts = [f"tag={tag}"] if tag else []
        parts.extend(options)
        prefix = f"/s/{','.join(parts)}" if parts else ""
        return f"{stack.simulator_url}{prefix}{api}"

    return build


@pytest.fixture
def simulator_calls(stack: Stack) -> Callable[[str], dict[str, Any]]:
    def read(tag: str) -> dict[str, Any]:
        response = httpx.get(f"{stack.simulator_url}/__sim/calls", params={"tag": tag})
        assert response.status_code == 200, response.text
        return response.json()

    return read


def run_sql(database_url: str, statement: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(
            database_url.replace("postgresql+asyncpg://", "postgresql://")
        )
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture
def fresh_registry(stack: Stack) -> None:
    """Start the test with no providers, so it routes only to its own."""
    run_sql(stack.profile.database_url, "DELETE FROM providers.providers")
    store = redis.Redis.from_url(stack.profile.redis_url)
    for key in store.scan_iter("providers:*"):
        store.delete(key)


@pytest.fixture
def new_provider(
    client: httpx.Client, admin: User, fresh_registry: None
) -> Callable[..., dict[str, Any]]:
    """Create a provider as the admin; the name defaults to a fresh one."""

    def create(base_url: str, **fields: Any) -> dict[str, Any]:
        body = {
            "name": f"sim-{uuid.uuid4().hex[:10]}",
            "type": "openai",
            "apiKey": f"sk-test-{uuid.uuid4().hex}",
            "baseUrl": base_url,
            "priority": 1,
            "costPerImage": "0.02",
            "supportedSizes": ["256x256", "512x512", "1024x1024"],
            "maxImagesPerRequest": 10,
            "timeout": 10000,
            **fields,
        }
        response = client.post("/api/v1/providers", json=body, headers=admin.headers)
        assert response.status_code == 201, response.text
        return response.json()["data"]

    return create
