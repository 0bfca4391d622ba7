"""What every service's FastAPI app has in common: errors, request context,
metrics, tracing, health and readiness routes, and a graceful shutdown.

Shutdown on SIGTERM runs in three steps. First the app is marked draining:
`/readyz` returns 503, and the drain callbacks set the gRPC health service to
NOT_SERVING. Then uvicorn stops accepting connections and waits up to
`SHUTDOWN_GRACE_SECONDS` for in-flight requests. Last, the lifespan's shutdown
stops the gRPC server, with the same grace, and closes the pools.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from router_common.errors import install_error_handlers
from router_common.logging import RequestContextMiddleware
from router_common.metrics import install_metrics
from router_common.settings import ServiceSettings
from router_common.tracing import configure_tracing

log = structlog.get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool]]
DrainCallback = Callable[[], Awaitable[None]]
READINESS_TIMEOUT_SECONDS = 2.0


def create_service_app(
    *,
    service: str,
    settings: ServiceSettings,
    title: str,
    description: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]],
    readiness_checks: Callable[[FastAPI], dict[str, ReadinessCheck]],
) -> FastAPI:
    """Create an app with the router's error envelope, request ids, metrics,
    tracing and probes.

    `readiness_checks` receives the app once it has started and returns the named
    checks that `/readyz` runs (database, Redis, gRPC peers).
    """
    # No trailing-slash redirects: Starlette builds their Location from the
    # client's Host header, which would let a client choose where a redirect
    # points. A path with an extra slash is 404 like any unknown path.
    app = FastAPI(
        title=title, description=description, lifespan=lifespan, redirect_slashes=False
    )
    app.state.settings = settings
    app.state.draining = False
    app.state.drain_callbacks = []
    install_error_handlers(app)
    install_metrics(app, service)
    # Added last, so it runs first: the request line covers every other layer.
    app.add_middleware(RequestContextMiddleware)
    configure_tracing(service, settings.otel_exporter_otlp_endpoint, app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        if app.state.draining:
            return JSONResponse({"status": "draining", "checks": {}}, status_code=503)
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


def on_draining(app: FastAPI, callback: DrainCallback) -> None:
    """Run `callback` when the service starts shutting down, before it drains."""
    app.state.drain_callbacks.append(callback)


async def start_draining(app: FastAPI) -> None:
    """Mark the app draining and run its drain callbacks, logging their errors."""
    if app.state.draining:
        return
    app.state.draining = True
    log.info("service_draining")
    for callback in app.state.drain_callbacks:
        try:
            await callback()
        except Exception:  # noqa: BLE001 - shutdown goes on without this step
            log.exception("drain_callback_failed")


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


# How long an idle HTTP connection stays open; see `serve`.
UPSTREAM_KEEP_ALIVE_SECONDS = 75

# Connections per process. When all are busy, a command waits for one (up to
# REDIS_POOL_WAIT_SECONDS) instead of failing at once, so that a burst of
# concurrent requests queues briefly rather than failing with 503.
REDIS_MAX_CONNECTIONS = 200
REDIS_POOL_WAIT_SECONDS = 5.0


def create_redis(url: str) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=REDIS_POOL_WAIT_SECONDS,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, marking the app draining before it stops listening."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self.should_exit:
            log.info("shutdown_requested", signal=signal.Signals(sig).name)
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: Any = None) -> None:
        await start_draining(self._app)
        await super().shutdown(sockets)


def serve(
    app: FastAPI, settings: ServiceSettings, *, proxy_headers: bool = True
) -> None:
    """Run `app` under uvicorn with the router's logging and graceful shutdown.

    With `proxy_headers` false, uvicorn leaves the request's client address as
    the TCP peer instead of taking it from X-Forwarded-For.
    """
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        # uvicorn passes this to asyncio.timeout, so fractions of a second work.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,  # type: ignore[arg-type]
        proxy_headers=proxy_headers,
        # Longer than nginx keeps an idle upstream connection (60 s), so that
        # nginx, not uvicorn, closes it. Otherwise nginx may send a request on a
        # connection uvicorn is closing, and the client gets a reset.
        timeout_keep_alive=UPSTREAM_KEEP_ALIVE_SECONDS,
    )
    _DrainingServer(config, app).run()
