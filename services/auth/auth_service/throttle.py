"""Fixed-window attempt limits in Redis: failed logins and registrations.

An attempt is reserved before the password is checked: one Lua script checks
every counter of the attempt and, when none is full, increments them all. So
concurrent requests cannot run more password checks than the limit allows. A
successful login then releases its reservation (see `AttemptThrottle.succeed`).

Keys (single-node Redis, because one script touches several keys):
`auth:throttle:<scope>:<value>`, expiring when the window that the first
attempt opened ends.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from router_common.errors import RateLimitError, ServiceUnavailableError
from router_common.metrics import RATE_LIMIT_REJECTIONS

log = structlog.get_logger(__name__)

# KEYS: the counters. ARGV: each counter's limit, then each counter's window in
# seconds. Returns {0, 0} after incrementing every counter, or, when a counter
# is full, {milliseconds until the latest full counter expires, its index}.
_RESERVE_SCRIPT = """
local count = #KEYS
local wait_ms, blocking = 0, 0
for i = 1, count do
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    if used >= tonumber(ARGV[i]) then
        local ttl = redis.call('PTTL', KEYS[i])
        if ttl < 0 then
            ttl = tonumber(ARGV[count + i]) * 1000
            redis.call('PEXPIRE', KEYS[i], ttl)
        end
        if ttl > wait_ms then
            wait_ms, blocking = ttl, i
        end
    end
end
if blocking > 0 then
    return {wait_ms, blocking}
end
for i = 1, count do
    if redis.call('INCR', KEYS[i]) == 1 then
        redis.call('EXPIRE', KEYS[i], tonumber(ARGV[count + i]))
    end
end
return {0, 0}
"""

# Give back one reserved attempt of KEYS[1], if its window is still open.
_RELEASE_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used > 0 then
    redis.call('DECR', KEYS[1])
end
return used
"""

REDIS_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `limit` attempts per `window_seconds` for one counter key."""

    key: str
    limit: int
    window_seconds: int


def account_key(email: str) -> str:
    return f"auth:throttle:login-account:{email.lower()}"


def login_address_key(address: str) -> str:
    return f"auth:throttle:login-address:{address}"


def registration_address_key(address: str) -> str:
    return f"auth:throttle:register-address:{address}"


async def reserve(redis: Redis, limits: list[Limit], *, action: str) -> None:
    """Count one attempt against every limit, or raise 429 if one is full.

    Raises `RateLimitError` with Retry-After and X-RateLimit-* headers for the
    limit that stays full longest, and `ServiceUnavailableError` when Redis is
    unreachable (the attempt is then refused, never let through unchecked).
    """
    keys = [limit.key for limit in limits]
    arguments = [limit.limit for limit in limits] + [
        limit.window_seconds for limit in limits
    ]
    try:
        wait_ms, blocking = await redis.eval(
            _RESERVE_SCRIPT, len(keys), *keys, *arguments
        )
    except RedisError as error:
        log.error("throttle_unavailable", action=action, error=str(error))
        raise _redis_unavailable() from error
    if not blocking:
        return

    limit = limits[int(blocking) - 1]
    retry_after = max(1, math.ceil(int(wait_ms) / 1000))
    RATE_LIMIT_REJECTIONS.labels("auth", action).inc()
    log.warning("attempts_throttled", action=action, retry_after=retry_after)
    raise RateLimitError(
        f"Too many {action} attempts. Retry in {retry_after} seconds",
        details={"retryAfter": retry_after},
        headers={
            "Retry-After": str(retry_after),
            "X-RateLimit-Limit": str(limit.limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(retry_after),
        },
    )


async def reset(redis: Redis, key: str) -> None:
    """Delete a counter, as after a successful login on that account."""
    await _run(redis.delete(key))


async def release(redis: Redis, key: str) -> None:
    """Give back one reserved attempt that turned out not to be a failure."""
    await _run(redis.eval(_RELEASE_SCRIPT, 1, key))


async def _run(command: Awaitable[object]) -> None:
    try:
        await command
    except RedisError as error:
        # The login itself succeeded, and a counter left too high expires later.
        log.warning("throttle_update_failed", error=str(error))


def _redis_unavailable() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "Redis is unreachable, so attempts cannot be counted. Retry shortly",
        headers={"Retry-After": str(REDIS_RETRY_AFTER_SECONDS)},
    )
