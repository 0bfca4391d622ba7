"""The provider rows held in memory by each registry process, reloaded on change.

Every write to the providers table (the admin routes and `rotate-secrets`)
stores a fresh random token under `providers:rows_version` in Redis after its
commit. Each registry call reads that token in the same round trip as the Redis
server's clock, and reloads the rows from Postgres only when the token differs
from the one its copy was loaded under. The token is read before the rows, so a
copy is never older than the token it carries, and a write committed before a
call is seen by that call on every replica.

If the key is missing (Redis flushed, or a test cleared it), the call stores a
new token with SET NX first, so the next read differs from any cached token and
reloads. A write made straight in SQL must delete the key to be seen.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from imagerouter.v1 import providers_pb2
from providers_service.health import ROUND_ROBIN_KEY
from providers_service.models import Provider
from providers_service.secrets import SecretBox

ROWS_VERSION_KEY = "providers:rows_version"
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ProviderRows:
    """One loaded copy of the providers table, with the secrets decrypted."""

    version: bytes
    providers: list[Provider]
    by_id: dict[str, Provider]
    # Registry messages by provider id. A provider whose secret cannot be
    # decrypted has none, so it is never offered.
    messages: dict[str, providers_pb2.Provider]


@dataclass(frozen=True, slots=True)
class RegistryView:
    rows: ProviderRows
    # The Redis server's clock, in unix milliseconds.
    now_ms: int
    # The round-robin counter after this call's increment, or 0 without `rotate`.
    rotation: int


async def mark_rows_changed(redis: Redis) -> None:
    """Store a new rows version, so every registry process reloads its copy.

    Call it after the commit of any write to the providers table.
    """
    await redis.set(ROWS_VERSION_KEY, uuid.uuid4().hex)


class ProviderRowCache:
    def __init__(
        self, redis: Redis, session_factory: async_sessionmaker, secret_box: SecretBox
    ) -> None:
        self._redis = redis
        self._session_factory = session_factory
        self._secret_box = secret_box
        self._rows: ProviderRows | None = None
        self._reload_lock = asyncio.Lock()

    async def read(self, *, rotate: bool = False) -> RegistryView:
        """Return the current rows and the server clock in one Redis round trip.

        Raises RedisError or DBAPIError when a store cannot be reached.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.set(ROWS_VERSION_KEY, uuid.uuid4().hex, nx=True)
            pipe.get(ROWS_VERSION_KEY)
            if rotate:
                pipe.incr(ROUND_ROBIN_KEY)
            results = await pipe.execute()
        (seconds, microseconds), _created, version = results[:3]
        now_ms = int(seconds) * 1000 + int(microseconds) // 1000
        rotation = int(results[3]) if rotate else 0

        rows = self._rows
        if rows is None or rows.version != version:
            rows = await self._reload(version)
        return RegistryView(rows, now_ms, rotation)

    async def _reload(self, version: bytes) -> ProviderRows:
        async with self._reload_lock:
            # Another call may have loaded this version while this one waited.
            if self._rows is not None and self._rows.version == version:
                return self._rows
            async with self._session_factory() as session:
                providers = list(await session.scalars(select(Provider)))
            rows = ProviderRows(
                version=version,
                providers=providers,
                by_id={str(provider.id): provider for provider in providers},
                messages=self._messages(providers),
            )
            self._rows = rows
            log.debug("provider_rows_reloaded", count=len(providers))
            return rows

    def _messages(
        self, providers: Sequence[Provider]
    ) -> dict[str, providers_pb2.Provider]:
        messages = {}
        for provider in providers:
            try:
                api_key = self._secret_box.decrypt(provider.api_key_encrypted)
            except ValueError as error:
                # Logged once per reload, and the provider is left out of selections.
                log.error(
                    "provider_secret_unreadable",
                    provider_id=str(provider.id),
                    error=str(error),
                )
                continue
            messages[str(provider.id)] = to_message(provider, api_key)
        return messages


def to_message(provider: Provider, api_key: str) -> providers_pb2.Provider:
    return providers_pb2.Provider(
        id=str(provider.id),
        name=provider.name,
        type=provider.type,
        base_url=provider.base_url,
        api_key=api_key,
        priority=provider.priority,
        cost_per_image=format(provider.cost_per_image.normalize(), "f"),
        max_images_per_request=provider.max_images_per_request,
        timeout_ms=provider.timeout_ms,
        models=list(provider.models),
        supported_sizes=list(provider.supported_sizes),
    )
