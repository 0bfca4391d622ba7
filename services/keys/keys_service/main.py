"""The keys service's FastAPI app and its gRPC server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI

from imagerouter.v1 import keys_pb2, keys_pb2_grpc
from keys_service.grpc_server import KeyService
from keys_service.models import SCHEMA
from keys_service.routes import keys
from keys_service.settings import Settings, get_settings
from router_common.app import (
    create_redis,
    create_service_app,
    database_check,
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

    server, health = create_server(settings.internal_service_token)
    keys_pb2_grpc.add_KeyServiceServicer_to_server(
        KeyService(app.state.session_factory, settings.api_key_pepper), server
    )
    server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    await server.start()
    await mark_serving(health, [GRPC_SERVICE_NAME])
    log.info("service_started", port=settings.http_port, grpc_port=settings.grpc_port)
    try:
        yield
    finally:
        log.info("service_stopping")
        await mark_not_serving(health, [GRPC_SERVICE_NAME])
        await server.stop(settings.shutdown_grace_seconds)
        await app.state.redis.aclose()
        await app.state.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("keys", settings.log_level)
    app = create_service_app(
        title="Image Router keys service",
        description="API keys: creation, management and verification.",
        lifespan=lifespan,
        readiness_checks=lambda app: {
            "database": database_check(app.state.engine),
            "redis": redis_check(app.state.redis),
        },
    )
    app.state.settings = settings
    app.include_router(keys.router)
    return app
