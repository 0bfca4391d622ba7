"""The per-key version that the keys service mirrors in Redis.

Generation replicas cache VerifyKey responses and check this entry on every
request: they reuse a cached response only while the entry still equals the
version in that response. Every change of a key raises the entry after its
database commit, and a delete raises it past the last version, so the next
request after any change verifies the key again. The entry only ever grows,
so that two concurrent changes that reach Redis out of order cannot restore
an older version.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

VERSION_KEY_PREFIX = "keys:version:"

# KEYS[1]: the version entry. ARGV[1]: the version to store. ARGV[2]: seconds
# to live, or 0 for none. Stores ARGV[1] only when it is above the current
# value; returns the value stored afterwards.
_RAISE_VERSION_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if current >= wanted then
  return current
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return wanted
"""


def version_key(key_id: uuid.UUID | str) -> str:
    return f"{VERSION_KEY_PREFIX}{key_id}"


class KeyVersions:
    def __init__(self, redis: Redis) -> None:
        self._raise_version = redis.register_script(_RAISE_VERSION_SCRIPT)

    async def publish(
        self, key_id: uuid.UUID | str, version: int, *, ttl_seconds: int = 0
    ) -> None:
        """Raise the Redis entry of `key_id` to `version` unless it is higher.

        Raises `redis.exceptions.RedisError` when Redis is unreachable.
        """
        await self._raise_version(
            keys=[version_key(key_id)], args=[version, ttl_seconds]
        )
