"""Fixtures of the auth service's tests: registration helpers, direct database
reads, forged tokens and extra auth processes started with their own settings."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from stack import AUTH_HTTP, ServiceSpec, Stack
from tests.fixtures import PASSWORD

# Extra processes of a test stack must use ports base+20 to base+60.
_REPLICA_PORTS = itertools.count(20)


def new_email() -> str:
    return f"auth-{uuid.uuid4().hex[:12]}@test.example"


@pytest.fixture
def register(client: httpx.Client) -> Callable[..., httpx.Response]:
    """Post a registration; the email defaults to a fresh one."""

    def post(**fields: Any) -> httpx.Response:
        body = {"email": new_email(), "password": PASSWORD, **fields}
        return client.post("/api/v1/users/register", json=body)

    return post


@pytest.fixture
def login(client: httpx.Client) -> Callable[[str, str], httpx.Response]:
    def post(email: str, password: str = PASSWORD) -> httpx.Response:
        return client.post(
            "/api/v1/users/login", json={"email": email, "password": password}
        )

    return post


@pytest.fixture(scope="session")
def jwt_secret(stack: Stack) -> str:
    return stack.common_env()["JWT_SECRET"]


@pytest.fixture(scope="session")
def fetch_value(stack: Stack) -> Callable[..., Any]:
    """Run one SQL query on the test database and return its first value."""
    url = stack.profile.database_url.replace("postgresql+asyncpg://", "postgresql://")

    def fetch(query: str, *arguments: Any) -> Any:
        async def run() -> Any:
            connection = await asyncpg.connect(url)
            try:
                return await connection.fetchval(query, *arguments)
            finally:
                await connection.close()

        return asyncio.run(run())

    return fetch


@pytest.fixture(scope="session")
def forge_token(jwt_secret: str) -> Callable[..., str]:
    """Sign claims as the auth service would, with any change a test needs."""

    def forge(
        user_id: str,
        *,
        secret: str | None = None,
        drop: tuple[str, ...] = (),
        **overrides: Any,
    ) -> str:
        now = int(time.time())
        claims = {
            "sub": user_id,
            "role": "user",
            "ver": 0,
            "iat": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
            **overrides,
        }
        for name in drop:
            claims.pop(name)
        return jwt.encode(claims, secret or jwt_secret, algorithm="HS256")

    return forge


class AuthReplicas:
    """Extra auth processes on the test stack's database and Redis."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.names: list[str] = []

    def start(self, overrides: dict[str, str], *, wait_ready: bool = True) -> str:
        """Start an auth process with `overrides` and return its base URL."""
        base = next(spec for spec in self.stack.service_specs() if spec.name == "auth")
        port = self.stack.profile.port(next(_REPLICA_PORTS))
        name = f"auth-test-{port}"
        url = f"http://127.0.0.1:{port}"
        spec = ServiceSpec(
            name=name,
            command=base.command,
            cwd=base.cwd,
            env={**base.env, "HTTP_PORT": str(port), **overrides},
            health_url=f"{url}/healthz",
            ready_url=f"{url}/readyz" if wait_ready else None,
        )
        self.stack.start(spec)
        self.names.append(name)
        self.stack.wait_healthy(spec)
        return url

    def stop_all(self) -> None:
        for name in self.names:
            self.stack.stop(name)
        self.names.clear()


@pytest.fixture(scope="module")
def auth_replicas(stack: Stack) -> Iterator[AuthReplicas]:
    replicas = AuthReplicas(stack)
    try:
        yield replicas
    finally:
        replicas.stop_all()


@pytest.fixture(scope="session")
def auth_url(stack: Stack) -> str:
    """The auth service's own address, bypassing nginx."""
    return f"http://127.0.0.1:{stack.profile.port(AUTH_HTTP)}"
