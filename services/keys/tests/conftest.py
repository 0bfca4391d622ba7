"""Helpers for the keys tests: create keys with any fields, probe whether the
generation service accepts a key, and read rows from the test database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from stack import Stack
from tests.fixtures import User


@pytest.fixture
def create_key(client: httpx.Client) -> Callable[..., dict[str, Any]]:
    """Create a key for a user and return the `data` of the 201 response."""

    def create(user: User, **fields: Any) -> dict[str, Any]:
        body = {"name": f"key-{uuid.uuid4().hex[:8]}", **fields}
        response = client.post("/api/v1/keys", json=body, headers=user.headers)
        assert response.status_code == 201, response.text
        return response.json()["data"]

    return create


@pytest.fixture
def probe(gateway_url: str) -> Callable[..., httpx.Response]:
    """Read a generation that does not exist with a key, through nginx unless
    another base URL is given: 404 means the key was accepted, 401 rejected."""

    def read(key: str, base_url: str | None = None) -> httpx.Response:
        return httpx.get(
            f"{base_url or gateway_url}/api/v1/images/generations/{uuid.uuid4()}",
            headers={"X-API-Key": key},
            timeout=30,
        )

    return read


@pytest.fixture
def fetch_rows(stack: Stack) -> Callable[..., list[asyncpg.Record]]:
    """Run one query on the test stack's database and return its rows."""
    url = stack.profile.database_url.replace("postgresql+asyncpg://", "postgresql://")

    def fetch(query: str, *args: object) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            connection = await asyncpg.connect(url)
            try:
                return await connection.fetch(query, *args)
            finally:
                await connection.close()

        return asyncio.run(run())

    return fetch
