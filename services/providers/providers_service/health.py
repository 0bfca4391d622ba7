"""Per-provider health in Redis: statistics, circuit breaker, pauses, call slots.

Every registry replica reads and writes the same keys, and every decision that
changes state runs as one Lua script, so replicas never disagree. Times come
from the Redis server's clock (`TIME`), not from each replica's.

Keys per provider id:
- `providers:stats:<id>` (hash): outcome counters and the last error.
- `providers:recent:<id>` (list): the latest attempts, newest first, as
  `"<outcome> <latency ms> <unix ms>"`.
- `providers:circuit:<id>` (hash): `state` (closed, open, half_open),
  consecutive `failures`, `opened_at` and `trial_until` (unix ms).
- `providers:paused:<id>` (string): set after a 429, expires with the pause.
- `providers:calls:<id>` (sorted set): call slots taken in the last minute.

Circuit breaker: `error` and `timeout` outcomes count as failures. After
`threshold` consecutive failures the circuit opens and the provider is skipped.
Once the cool-down has passed the circuit is half-open: exactly one caller may
take a slot for a trial call (held for `trial_ms`, after which another caller
may try). A success closes the circuit; a failure opens it again. The other
outcomes (rate_limited, content_policy, invalid_request) leave it unchanged.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

RATE_WINDOW_MS = 60_000
# Statistics of a provider that no report touches for this long expire, so a
# deleted provider leaves nothing behind even when a late report arrives.
STATS_TTL_SECONDS = 7 * 24 * 3600
ROUND_ROBIN_KEY = "providers:round_robin"
FAILURE_OUTCOMES = frozenset({"error", "timeout"})
# Outcomes that show whether the provider works. The others concern the request
# or capacity, so the success rate leaves them out.
HEALTH_OUTCOMES = frozenset({"success", "error", "timeout"})

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: stats, recent, circuit, paused, and the report's id key (or none).
# ARGV: outcome, latency ms, error type, error message, pause seconds,
#       failure threshold, recent window length, TTL seconds.
# Returns {stored circuit state before, stored circuit state after}. A report
# whose id was recorded before changes nothing, so a batch sent again after a
# failure midway or a lost reply is counted once.
_REPORT_SCRIPT = (
    _NOW_MS
    + """
local outcome = ARGV[1]
local ttl = tonumber(ARGV[8])
local before = redis.call('HGET', KEYS[3], 'state') or 'closed'
if KEYS[5] and not redis.call('SET', KEYS[5], '1', 'NX', 'EX', 3600) then
  return {before, before}
end
redis.call('HINCRBY', KEYS[1], 'outcome:' .. outcome, 1)
if outcome ~= 'success' then
  redis.call('HSET', KEYS[1], 'last_error_type', ARGV[3],
             'last_error_message', ARGV[4], 'last_error_at', now)
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('LPUSH', KEYS[2], outcome .. ' ' .. ARGV[2] .. ' ' .. now)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[7]) - 1)
redis.call('EXPIRE', KEYS[2], ttl)

if outcome == 'success' then
  redis.call('HSET', KEYS[3], 'state', 'closed', 'failures', 0)
  redis.call('HDEL', KEYS[3], 'opened_at', 'trial_until')
  redis.call('EXPIRE', KEYS[3], ttl)
elseif outcome == 'error' or outcome == 'timeout' then
  local failures = redis.call('HINCRBY', KEYS[3], 'failures', 1)
  local state = redis.call('HGET', KEYS[3], 'state')
  if state == 'open' or state == 'half_open'
     or failures >= tonumber(ARGV[6]) then
    redis.call('HSET', KEYS[3], 'state', 'open', 'opened_at', now)
    redis.call('HDEL', KEYS[3], 'trial_until')
  end
  redis.call('EXPIRE', KEYS[3], ttl)
elseif outcome == 'rate_limited' then
  local pause_ms = tonumber(ARGV[5]) * 1000
  redis.call('SET', KEYS[4], now + pause_ms, 'PX', pause_ms)
end
return {before, redis.call('HGET', KEYS[3], 'state') or 'closed'}
"""
)

# KEYS: circuit, paused, calls.
# ARGV: rate limit per minute (0 = none), cool-down ms, trial ms, slot member.
# Returns {granted (0/1), reason, retry after ms}; a granted slot whose trial
# call moved the circuit from open to half-open has the reason 'trial'.
_ACQUIRE_SCRIPT = (
    _NOW_MS
    + """
local paused_ms = redis.call('PTTL', KEYS[2])
if paused_ms > 0 then
  return {0, 'paused', paused_ms}
end

local state = redis.call('HGET', KEYS[1], 'state')
local trial = false
if state == 'open' then
  local reopens = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
                  + tonumber(ARGV[2])
  if now < reopens then
    return {0, 'circuit_open', reopens - now}
  end
  trial = true
elseif state == 'half_open' then
  local trial_until = tonumber(redis.call('HGET', KEYS[1], 'trial_until') or '0')
  if now < trial_until then
    return {0, 'circuit_open', trial_until - now}
  end
  trial = true
end

local limit = tonumber(ARGV[1])
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[3]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {0, 'rate_limited', tonumber(oldest[2]) + 60000 - now}
  end
  redis.call('ZADD', KEYS[3], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[3], 60000)
end

if trial then
  redis.call('HSET', KEYS[1], 'state', 'half_open',
             'trial_until', now + tonumber(ARGV[3]))
  if state == 'open' then
    return {1, 'trial', 0}
  end
end
return {1, '', 0}
"""
)


def stats_key(provider_id: str) -> str:
    return f"providers:stats:{provider_id}"


def recent_key(provider_id: str) -> str:
    return f"providers:recent:{provider_id}"


def circuit_key(provider_id: str) -> str:
    return f"providers:circuit:{provider_id}"


def paused_key(provider_id: str) -> str:
    return f"providers:paused:{provider_id}"


def calls_key(provider_id: str) -> str:
    return f"providers:calls:{provider_id}"


def report_key(report_id: str) -> str:
    return f"providers:report:{report_id}"


def provider_keys(provider_id: str) -> list[str]:
    return [
        stats_key(provider_id),
        recent_key(provider_id),
        circuit_key(provider_id),
        paused_key(provider_id),
        calls_key(provider_id),
    ]


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int
    cooldown_ms: int
    trial_ms: int


@dataclass(frozen=True, slots=True)
class RecentAttempt:
    outcome: str
    latency_ms: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class ProviderState:
    """Current state of one provider, as routing and the health view read it."""

    circuit: str
    consecutive_failures: int
    # The circuit is closed, or half-open with no trial call in flight.
    accepting_calls: bool
    paused_until_ms: int | None
    calls_last_minute: int
    recent: list[RecentAttempt]

    @property
    def success_latencies(self) -> list[int]:
        return [a.latency_ms for a in self.recent if a.outcome == "success"]

    @property
    def median_latency_ms(self) -> float | None:
        latencies = self.success_latencies
        return statistics.median(latencies) if latencies else None


@dataclass(frozen=True, slots=True)
class SlotDecision:
    granted: bool
    reason: str
    retry_after_ms: int


class HealthStore:
    def __init__(
        self, redis: Redis, breaker: BreakerSettings, recent_window: int
    ) -> None:
        self._redis = redis
        self._breaker = breaker
        self._recent_window = recent_window
        self._report = redis.register_script(_REPORT_SCRIPT)
        self._acquire = redis.register_script(_ACQUIRE_SCRIPT)

    async def record_outcome(
        self,
        provider_id: str,
        *,
        outcome: str,
        latency_ms: int,
        error_type: str,
        error_message: str,
        pause_seconds: int,
        report_id: str = "",
    ) -> tuple[str, str]:
        """Record one attempt and update the circuit; return the circuit's stored
        state before and after.

        With a `report_id`, a report recorded before (within an hour) is
        ignored, and both states are the current one.
        """
        keys = [
            stats_key(provider_id),
            recent_key(provider_id),
            circuit_key(provider_id),
            paused_key(provider_id),
        ]
        if report_id:
            keys.append(report_key(report_id))
        before, after = await self._report(
            keys=keys,
            args=[
                outcome,
                max(0, latency_ms),
                error_type,
                error_message,
                max(1, pause_seconds),
                self._breaker.failure_threshold,
                self._recent_window,
                STATS_TTL_SECONDS,
            ],
        )
        return _text(before), _text(after)

    async def acquire_slot(self, provider_id: str, rate_limit: int) -> SlotDecision:
        granted, reason, retry_after_ms = await self._acquire(
            keys=[
                circuit_key(provider_id),
                paused_key(provider_id),
                calls_key(provider_id),
            ],
            args=[
                rate_limit,
                self._breaker.cooldown_ms,
                self._breaker.trial_ms,
                uuid.uuid4().hex,
            ],
        )
        return SlotDecision(bool(granted), _text(reason), int(retry_after_ms))

    async def read_states(
        self,
        provider_ids: Sequence[str],
        now_ms: int | None = None,
        *,
        with_recent: bool = True,
    ) -> dict[str, ProviderState]:
        """Read the state of several providers in one round trip.

        `now_ms` is the Redis server's clock in unix milliseconds. Without it,
        one more round trip reads the clock first. Without `with_recent`, the
        recent attempts (up to the health window each, the bulk of the reply)
        are left out and `recent` is empty; only the latency strategy and the
        health figures need them.
        """
        if now_ms is None:
            seconds, microseconds = await self._redis.time()
            now_ms = int(seconds) * 1000 + int(microseconds) // 1000
        if not provider_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for provider_id in provider_ids:
                pipe.hgetall(circuit_key(provider_id))
                pipe.pttl(paused_key(provider_id))
                pipe.zcount(calls_key(provider_id), now_ms - RATE_WINDOW_MS, "+inf")
                if with_recent:
                    pipe.lrange(recent_key(provider_id), 0, -1)
            results = await pipe.execute()

        per_provider = 4 if with_recent else 3
        states = {}
        for index, provider_id in enumerate(provider_ids):
            first = per_provider * index
            circuit, paused_ttl, calls = results[first : first + 3]
            recent = results[first + 3] if with_recent else []
            states[provider_id] = self._state(
                now_ms, circuit, paused_ttl, int(calls), recent
            )
        return states

    def _state(
        self,
        now_ms: int,
        circuit: dict[bytes, bytes],
        paused_ttl: int,
        calls: int,
        recent: list[bytes],
    ) -> ProviderState:
        stored = _text(circuit.get(b"state", b"closed"))
        opened_at = int(circuit.get(b"opened_at", b"0"))
        trial_until = int(circuit.get(b"trial_until", b"0"))
        if stored == OPEN and now_ms < opened_at + self._breaker.cooldown_ms:
            effective, accepting = OPEN, False
        elif stored in (OPEN, HALF_OPEN):
            effective, accepting = HALF_OPEN, now_ms >= trial_until
        else:
            effective, accepting = CLOSED, True
        return ProviderState(
            circuit=effective,
            consecutive_failures=int(circuit.get(b"failures", b"0")),
            accepting_calls=accepting,
            paused_until_ms=now_ms + paused_ttl if paused_ttl > 0 else None,
            calls_last_minute=calls,
            recent=[_parse_attempt(entry) for entry in recent],
        )

    async def last_error(self, provider_id: str) -> dict[str, str] | None:
        stored = await self._redis.hgetall(stats_key(provider_id))
        if b"last_error_at" not in stored:
            return None
        return {
            "type": _text(stored.get(b"last_error_type", b"")),
            "message": _text(stored.get(b"last_error_message", b"")),
            "at_ms": _text(stored[b"last_error_at"]),
        }

    async def forget(self, provider_id: str) -> None:
        await self._redis.delete(*provider_keys(provider_id))


def _parse_attempt(entry: bytes) -> RecentAttempt:
    outcome, latency, at = _text(entry).split(" ")
    return RecentAttempt(outcome, int(latency), int(at))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
