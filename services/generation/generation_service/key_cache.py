"""A per-process cache of API-key verifications, checked against Redis on
every use so that a revoked key is rejected on the very next request.

The keys service raises a per-key version in Redis (`keys:version:<key id>`)
before it commits any change or delete of a key. A cached verification is
reused only while that entry still equals the version the verification
returned. A missing or different entry, an expired key or a cache entry older
than `API_KEY_CACHE_SECONDS` sends the key to the keys service again. A cache
hit costs one Redis GET and no gRPC call.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis

from imagerouter.v1 import keys_pb2

# Written by the keys service; the two must agree on this name.
VERSION_KEY_PREFIX = "keys:version:"


class KeyCacheSettings(BaseSettings):
    """Read from `API_KEY_CACHE_SECONDS` and `API_KEY_CACHE_SIZE`."""

    model_config = SettingsConfigDict(env_prefix="API_KEY_CACHE_", extra="ignore")

    # Maximum age of a cached verification, in seconds; 0 turns the cache off.
    # The version check makes revocation immediate at any value, so this only
    # bounds how stale the key's last-use time in the keys service can be.
    seconds: float = Field(default=60.0, ge=0)
    # Maximum number of cached keys; the least recently used one is dropped.
    size: int = Field(default=10_000, ge=1)


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    key_id: str
    user_id: str
    user_role: str
    scopes: frozenset[str]
    # Requests per minute and images per day; 0 means no limit of its own.
    rate_limit: int
    daily_image_limit: int
    version: int
    # Unix milliseconds; 0 means the key never expires.
    expires_at_ms: int

    @classmethod
    def from_response(cls, response: keys_pb2.VerifyKeyResponse) -> VerifiedKey:
        return cls(
            key_id=response.key_id,
            user_id=response.user_id,
            user_role=response.user_role,
            scopes=frozenset(response.scopes),
            rate_limit=response.rate_limit,
            daily_image_limit=response.daily_image_limit,
            version=response.version,
            expires_at_ms=response.expires_at_unix_ms,
        )

    def has_expired(self) -> bool:
        return bool(self.expires_at_ms) and time.time() * 1000 >= self.expires_at_ms


@dataclass(frozen=True, slots=True)
class _Entry:
    key: VerifiedKey
    cached_at: float


class KeyVerificationCache:
    def __init__(
        self,
        redis: Redis,
        verify: Callable[[str], Awaitable[keys_pb2.VerifyKeyResponse]],
        *,
        max_age_seconds: float,
        max_entries: int,
    ) -> None:
        self._redis = redis
        self._verify = verify
        self._max_age_seconds = max_age_seconds
        self._max_entries = max_entries
        # Keyed by the SHA-256 of the presented key, so that the process keeps
        # no full key after the request that carried it.
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    async def verify(self, key: str) -> VerifiedKey:
        """Return the verification of `key`, from the cache when still valid.

        Raises `grpc.aio.AioRpcError` from the keys service (NOT_FOUND or
        PERMISSION_DENIED for a rejected key) and `redis.exceptions.RedisError`
        when the version cannot be read.
        """
        digest = hashlib.sha256(key.encode()).digest()
        entry = self._entries.get(digest)
        if entry is not None:
            current = await self._is_current(entry)
            # While the version was read, a concurrent request may have dropped
            # or replaced this entry: touch the cache only if it is still there.
            still_cached = self._entries.get(digest) is entry
            if current:
                if still_cached:
                    self._entries.move_to_end(digest)
                return entry.key
            if still_cached:
                del self._entries[digest]

        verified = VerifiedKey.from_response(await self._verify(key))
        if self._max_age_seconds > 0:
            self._entries[digest] = _Entry(verified, time.monotonic())
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return verified

    async def _is_current(self, entry: _Entry) -> bool:
        if time.monotonic() - entry.cached_at > self._max_age_seconds:
            return False
        if entry.key.has_expired():
            return False
        current = await self._redis.get(VERSION_KEY_PREFIX + entry.key.key_id)
        return current is not None and int(current) == entry.key.version
