"""Last-use times of API keys, collected in Redis and written in batches.

VerifyKey stores the time of each verification in one Redis hash instead of
writing the database per request. A background task moves the hash into the
`last_used_at` column every `LAST_USED_FLUSH_SECONDS`, and the REST routes
merge the entries not yet written, so a client sees the latest time at once.
Generation replicas call VerifyKey only when their cache misses, so the time
shown is accurate to within their cache lifetime.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import bindparam, func, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker

from keys_service.models import ApiKey

log = structlog.get_logger(__name__)

LAST_USED_KEY = "keys:last-used"

# KEYS[1]: the hash. ARGV[1]: key id. ARGV[2]: Unix milliseconds. Keeps the
# later of the stored and the given time.
_RECORD_SCRIPT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or tonumber(current) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"""

# KEYS[1]: the hash. ARGV: key id, Unix milliseconds, key id, ... Removes
# each entry that still contains the written time; a later use recorded meanwhile
# stays for the next flush.
_FORGET_WRITTEN_SCRIPT = """
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
"""


def _to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_millis(value: bytes | str) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, UTC)


class LastUsedRecorder:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._record = redis.register_script(_RECORD_SCRIPT)
        self._forget_written = redis.register_script(_FORGET_WRITTEN_SCRIPT)
        # The entries the previous flush wrote, as key id, time, key id, ...
        self._written: list[bytes] = []

    async def record(self, key_id: uuid.UUID | str, moment: datetime) -> None:
        await self._record(keys=[LAST_USED_KEY], args=[str(key_id), _to_millis(moment)])

    async def pending(self, key_ids: list[uuid.UUID]) -> dict[uuid.UUID, datetime]:
        """Return the times recorded for `key_ids` but not yet written."""
        if not key_ids:
            return {}
        values = await self._redis.hmget(LAST_USED_KEY, [str(i) for i in key_ids])
        return {
            key_id: _from_millis(value)
            for key_id, value in zip(key_ids, values, strict=True)
            if value is not None
        }

    async def flush(self, session_factory: async_sessionmaker) -> int:
        """Write the collected times to the database; return how many keys.

        A written time leaves Redis one flush later, not at its commit. A read
        loads the rows first and the pending times second, so a time that left
        Redis right after its commit could be missing from both. Two replicas
        may write the same batch, which GREATEST makes harmless. When the
        database write fails, the times stay for the next attempt and the
        error is raised.
        """
        if self._written:
            await self._forget_written(keys=[LAST_USED_KEY], args=self._written)
            self._written = []
        stored = await self._redis.hgetall(LAST_USED_KEY)
        if not stored:
            return 0
        flat = [item for pair in stored.items() for item in pair]
        entries = {
            uuid.UUID(flat[i].decode()): _from_millis(flat[i + 1])
            for i in range(0, len(flat), 2)
        }
        table = ApiKey.__table__
        # GREATEST ignores NULL in Postgres, so a first use also gets written.
        statement = (
            update(table)
            .where(table.c.id == bindparam("key_id"))
            .values(
                last_used_at=func.greatest(table.c.last_used_at, bindparam("used")),
                # Last use is not a change of the key itself.
                updated_at=table.c.updated_at,
            )
        )
        rows = [{"key_id": key_id, "used": used} for key_id, used in entries.items()]
        async with session_factory() as session:
            await session.execute(statement, rows)
            await session.commit()
        self._written = flat
        return len(rows)

    async def run(
        self, session_factory: async_sessionmaker, interval_seconds: float
    ) -> None:
        """Flush every `interval_seconds` until cancelled, logging failures."""
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                written = await self.flush(session_factory)
            except (RedisError, SQLAlchemyError) as error:
                log.error(
                    "last_used_flush_failed",
                    error_class=type(error).__name__,
                    error=str(error),
                )
                continue
            if written:
                log.debug("last_used_flushed", keys=written)
