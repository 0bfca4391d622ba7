"""What every service's FastAPI app has in common: errors, request context,
health and readiness routes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from router_common.errors import install_error_handlers
from router_common.logging import RequestContextMiddleware
from router_common.settings import ServiceSettings

ReadinessCheck = Callable[[], Awaitable[bool]]
READINESS_TIMEOUT_SECONDS = 2.0


def create_service_app(
    *,
    title: str,
    description: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]],
    readiness_checks: Callable[[FastAPI], dict[str, ReadinessCheck]],
) -> FastAPI:
    """Create an app with the router's error envelope, request ids and probes.

    `readiness_checks` receives the app once it has started and returns the named
    checks that `/readyz` runs (database, Redis, gRPC peers).
    """
    app = FastAPI(title=title, description=description, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks = readiness_checks(app)
        results = await asyncio.gather(
            *(_run_check(check) for check in checks.values())
        )
        report = dict(zip(checks, results, strict=True))
        ready = all(results)
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": report},
            status_code=200 if ready else 503,
        )

    return app


async def _run_check(check: ReadinessCheck) -> bool:
    try:
        return await asyncio.wait_for(check(), READINESS_TIMEOUT_SECONDS)
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False


def database_check(engine: AsyncEngine) -> ReadinessCheck:
    async def check() -> bool:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True

    return check


def redis_check(redis: Redis) -> ReadinessCheck:
    async def check() -> bool:
        try:
            return bool(await redis.ping())
        except RedisError:
            return False

    return check


def create_redis(url: str) -> Redis:
    return Redis.from_url(
        url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30
    )


def serve(
    app: FastAPI, settings: ServiceSettings, *, proxy_headers: bool = True
) -> None:
    """Run `app` under uvicorn with the router's logging and graceful shutdown.

    With `proxy_headers` false, uvicorn leaves the request's client address as
    the TCP peer instead of taking it from X-Forwarded-For.
    """
    import uvicorn

    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        proxy_headers=proxy_headers,
    )
