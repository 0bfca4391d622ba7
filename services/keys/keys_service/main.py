"""The keys service's FastAPI app and its gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from imagerouter.v1 import keys_pb2, keys_pb2_grpc
from keys_service.grpc_server import KeyService
from keys_service.last_used import LastUsedRecorder
from keys_service.models import SCHEMA
from keys_service.routes import keys
from keys_service.settings import Settings, get_settings
from keys_service.versions import KeyVersions
from router_common.app import (
    create_redis,
    create_service_app,
    database_check,
    on_draining,
    redis_check,
)
from router_common.db import create_engine, create_session_factory, upgrade_to_head
from router_common.grpc_helpers import create_server, mark_not_serving, mark_serving
from router_common.logging import configure_logging

SERVICE_DIR = Path(__file__).resolve().parent.parent
GRPC_SERVICE_NAME = keys_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name
log = structlog.get_logger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if settings.migrate_on_start:
        await asyncio.to_thread(
            upgrade_to_head, SERVICE_DIR, settings.database_url, SCHEMA
        )
    app.state.engine = create_engine(settings.database_url)
    app.state.session_factory = create_session_factory(app.state.engine)
    app.state.redis = create_redis(settings.redis_url)

    app.state.key_versions = KeyVersions(app.state.redis)
    app.state.last_used = LastUsedRecorder(app.state.redis)
    flusher = asyncio.create_task(
        app.state.last_used.run(
            app.state.session_factory, settings.last_used_flush_seconds
        )
    )

    server, health = create_server(settings.internal_service_token)
    service = KeyService(
        app.state.session_factory,
        settings.api_key_pepper,
        app.state.key_versions,
        app.state.last_used,
    )
    keys_pb2_grpc.add_KeyServiceServicer_to_server(service, server)
    server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    await server.start()
    await mark_serving(health, [GRPC_SERVICE_NAME])
    # Probes see NOT_SERVING as soon as SIGTERM arrives, while HTTP drains.
    on_draining(app, lambda: mark_not_serving(health, [GRPC_SERVICE_NAME]))
    log.info("service_started", port=settings.http_port, grpc_port=settings.grpc_port)
    try:
        yield
    finally:
        log.info("service_stopping")
        await mark_not_serving(health, [GRPC_SERVICE_NAME])
        await server.stop(settings.shutdown_grace_seconds)
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await _flush_last_used(app)
        await app.state.redis.aclose()
        await app.state.engine.dispose()
        log.info("service_stopped")


async def _flush_last_used(app: FastAPI) -> None:
    """Write the last-use times still in Redis before the process exits."""
    try:
        await app.state.last_used.flush(app.state.session_factory)
    except (RedisError, SQLAlchemyError) as error:
        log.error("last_used_flush_failed", error=str(error))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("keys", settings.log_level)
    app = create_service_app(
        service="keys",
        settings=settings,
        title="Image Router keys service",
        description="API keys: creation, management and verification.",
        lifespan=lifespan,
        readiness_checks=lambda app: {
            "database": database_check(app.state.engine),
            "redis": redis_check(app.state.redis),
        },
    )
    app.include_router(keys.router)
    return app
