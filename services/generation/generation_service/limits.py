"""Request rate limits and image quotas, decided atomically in Redis.

Each generation request is checked against every limit that applies to it in one
Lua script, which either consumes from all of them or from none, so concurrent
requests on any number of replicas can never overshoot:

- requests per window (sliding log, `RATE_LIMIT_WINDOW_SECONDS`, 60 by default):
  the API key's `rateLimit`, and the user's `USER_REQUESTS_PER_MINUTE`, which
  applies to user tokens and caps the sum over the user's keys;
- images per quota window (a fixed window aligned to the epoch, by default one
  UTC day): the key's `dailyImageLimit` and the user's `USER_IMAGES_PER_DAY`.
  `n` images consume `n`; images of a failed generation are given back.

A limit of 0 means none. The response headers describe the tightest limit.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from generation_service.auth import Principal
from generation_service.settings import Settings
from router_common.errors import RateLimitError, ServiceUnavailableError
from router_common.metrics import RATE_LIMIT_REJECTIONS

log = structlog.get_logger(__name__)

# Checks every limit, then consumes from all of them, in one atomic step.
# KEYS[i]: the Redis key of limit i.
# ARGV: now_ms, member, then per limit: kind, max, window_ms, cost.
# kind "log": sliding window of requests; "quota": counter until the window ends.
# Returns {allowed, index of the deciding limit, max, remaining, reset_ms}.
LIMIT_SCRIPT = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local count = #KEYS
local used = {}
local resets = {}
for i = 1, count do
  local base = 2 + (i - 1) * 4
  local kind, max = ARGV[base + 1], tonumber(ARGV[base + 2])
  local window, cost = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  if kind == "log" then
    redis.call("ZREMRANGEBYSCORE", KEYS[i], "-inf", now - window)
    used[i] = redis.call("ZCARD", KEYS[i])
    local oldest = redis.call("ZRANGE", KEYS[i], 0, 0, "WITHSCORES")
    if oldest[2] then
      resets[i] = tonumber(oldest[2]) + window - now
    else
      resets[i] = window
    end
  else
    used[i] = tonumber(redis.call("GET", KEYS[i]) or "0")
    resets[i] = window - (now % window)
  end
  if used[i] + cost > max then
    return {0, i, max, math.max(max - used[i], 0), resets[i]}
  end
end
local tightest, tightest_left = 1, nil
for i = 1, count do
  local base = 2 + (i - 1) * 4
  local kind, max = ARGV[base + 1], tonumber(ARGV[base + 2])
  local window, cost = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  if kind == "log" then
    redis.call("ZADD", KEYS[i], now, member)
    redis.call("PEXPIRE", KEYS[i], window)
  else
    redis.call("INCRBY", KEYS[i], cost)
    redis.call("PEXPIRE", KEYS[i], resets[i])
  end
  local left = max - used[i] - cost
  if tightest_left == nil or left < tightest_left then
    tightest, tightest_left = i, left
  end
end
local base = 2 + (tightest - 1) * 4
return {1, tightest, tonumber(ARGV[base + 2]), tightest_left, resets[tightest]}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    # "log" (requests per window) or "quota" (images per window).
    kind: str
    key: str
    max: int
    window_seconds: float
    cost: int
    description: str


@dataclass(frozen=True, slots=True)
class Decision:
    limit: Limit
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit.max),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }


@dataclass(frozen=True, slots=True)
class Reservation:
    """The limits a request consumed from, so that its images can be given back."""

    quota_keys: tuple[str, ...]
    images: int
    decision: Decision | None
    # The request's entry in each requests-per-window log, so that a request
    # refused after its limits were checked can be taken out of the count.
    request_keys: tuple[str, ...] = ()
    member: str = ""

    def as_record(self) -> dict[str, Any]:
        return {"keys": list(self.quota_keys), "images": self.images}

    @classmethod
    def from_record(cls, options: dict[str, Any] | None) -> Reservation:
        record = (options or {}).get("quota") or {}
        return cls(tuple(record.get("keys", ())), int(record.get("images", 0)), None)


class Limiter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._script = redis.register_script(LIMIT_SCRIPT)

    def limits_for(self, caller: Principal, images: int) -> list[Limit]:
        settings = self._settings
        window = settings.rate_limit_window_seconds
        quota_window = settings.image_quota_window_seconds
        quota_slot = int(time.time() // quota_window)
        candidates = [
            Limit(
                "user_requests",
                "log",
                f"limits:user:{caller.user_id}:requests",
                settings.user_requests_per_minute,
                window,
                1,
                "requests per user",
            ),
            Limit(
                "user_images",
                "quota",
                f"limits:user:{caller.user_id}:images:{quota_slot}",
                settings.user_images_per_day,
                quota_window,
                images,
                "images per user",
            ),
        ]
        if caller.api_key_id:
            candidates += [
                Limit(
                    "api_key_requests",
                    "log",
                    f"limits:key:{caller.api_key_id}:requests",
                    caller.rate_limit,
                    window,
                    1,
                    "requests per API key",
                ),
                Limit(
                    "api_key_images",
                    "quota",
                    f"limits:key:{caller.api_key_id}:images:{quota_slot}",
                    caller.daily_image_limit,
                    quota_window,
                    images,
                    "images per API key",
                ),
            ]
        return [limit for limit in candidates if limit.max > 0]

    async def reserve(self, caller: Principal, images: int) -> Reservation:
        """Consume one request and `images` images from every applicable limit.

        Raises 429 naming the limit that refused, or 503 while Redis is down.
        """
        limits = self.limits_for(caller, images)
        if not limits:
            return Reservation((), images, None)

        member = uuid.uuid4().hex
        arguments: list[str | int] = [int(time.time() * 1000), member]
        for limit in limits:
            window_ms = int(limit.window_seconds * 1000)
            arguments += [limit.kind, limit.max, window_ms, limit.cost]
        try:
            allowed, index, _max, remaining, reset_ms = await self._script(
                keys=[limit.key for limit in limits], args=arguments
            )
        except RedisError as error:
            log.warning("rate_limit_store_unavailable", error=type(error).__name__)
            raise ServiceUnavailableError(
                "Rate limits cannot be checked right now; retry shortly",
                headers={"Retry-After": "5"},
            ) from None

        limit = limits[int(index) - 1]
        decision = Decision(
            limit, int(remaining), max(1, math.ceil(int(reset_ms) / 1000))
        )
        if not allowed:
            RATE_LIMIT_REJECTIONS.labels("generation", limit.name).inc()
            log.info("rate_limit_refused", limit=limit.name, max=limit.max)
            raise _refusal(decision)
        quota_keys = tuple(item.key for item in limits if item.kind == "quota")
        request_keys = tuple(item.key for item in limits if item.kind == "log")
        return Reservation(quota_keys, images, decision, request_keys, member)

    async def cancel(self, reservation: Reservation) -> None:
        """Undo a reservation whole: the images and the request itself, for a
        request rejected before it was stored (no provider can serve it)."""
        await self._undo(reservation, request_keys=reservation.request_keys)

    async def give_back(self, reservation: Reservation) -> None:
        """Return the images of a generation that produced none."""
        await self._undo(reservation, request_keys=())

    async def _undo(
        self, reservation: Reservation, *, request_keys: tuple[str, ...]
    ) -> None:
        quota_keys = reservation.quota_keys if reservation.images else ()
        if not quota_keys and not request_keys:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key in request_keys:
                    pipe.zrem(key, reservation.member)
                for key in quota_keys:
                    pipe.decrby(key, reservation.images)
                await pipe.execute()
        except RedisError as error:
            log.warning("quota_refund_failed", error=type(error).__name__)


def _refusal(decision: Decision) -> RateLimitError:
    limit = decision.limit
    window = _describe_window(limit.window_seconds)
    unit = "images" if limit.kind == "quota" else "requests"
    message = (
        f"Rate limit exceeded: at most {limit.max} {unit} per {window} "
        f"({limit.description}); retry in {decision.reset_seconds} s"
    )
    return RateLimitError(
        message,
        details={
            "limit": limit.name,
            "max": limit.max,
            "windowSeconds": limit.window_seconds,
            "retryAfterSeconds": decision.reset_seconds,
        },
        headers={**decision.headers(), "Retry-After": str(decision.reset_seconds)},
    )


def _describe_window(seconds: float) -> str:
    if seconds == 86400:
        return "day"
    if seconds == 60:
        return "minute"
    return f"{seconds:g} seconds"
