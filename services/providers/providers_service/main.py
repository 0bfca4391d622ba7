"""The providers service's FastAPI app and its gRPC provider registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI

from imagerouter.v1 import providers_pb2, providers_pb2_grpc
from providers_service.grpc_server import ProviderRegistry
from providers_service.health import BreakerSettings, HealthStore
from providers_service.metrics import circuit_refresher
from providers_service.models import SCHEMA
from providers_service.paths import NormalizePathMiddleware
from providers_service.routes import providers
from providers_service.row_cache import ProviderRowCache
from providers_service.schemas import set_url_allowlist
from providers_service.secrets import SecretBox
from providers_service.settings import Settings, get_settings
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
from router_common.url_guard import Allowlist

SERVICE_DIR = Path(__file__).resolve().parent.parent
GRPC_SERVICE_NAME = providers_pb2.DESCRIPTOR.services_by_name[
    "ProviderRegistry"
].full_name
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
    app.state.secret_box = SecretBox(settings.provider_secret_keys)
    app.state.health = HealthStore(
        app.state.redis,
        BreakerSettings(
            failure_threshold=settings.circuit_failure_threshold,
            cooldown_ms=int(settings.circuit_cooldown_seconds * 1000),
            trial_ms=int(settings.circuit_trial_seconds * 1000),
        ),
        recent_window=settings.health_window_attempts,
    )
    set_url_allowlist(Allowlist.parse(settings.provider_url_allowlist))
    app.state.metrics_refreshers.append(
        circuit_refresher(app.state.session_factory, app.state.health)
    )

    server, health = create_server(settings.internal_service_token)
    providers_pb2_grpc.add_ProviderRegistryServicer_to_server(
        ProviderRegistry(
            ProviderRowCache(
                app.state.redis, app.state.session_factory, app.state.secret_box
            ),
            app.state.health,
            default_strategy=settings.routing_strategy,
            rate_limited_pause_seconds=settings.rate_limited_pause_seconds,
        ),
        server,
    )
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
        await app.state.redis.aclose()
        await app.state.engine.dispose()
        log.info("service_stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("providers", settings.log_level)
    app = create_service_app(
        service="providers",
        settings=settings,
        title="Image Router providers service",
        description="Provider management (admins) and the provider registry.",
        lifespan=lifespan,
        readiness_checks=lambda app: {
            "database": database_check(app.state.engine),
            "redis": redis_check(app.state.redis),
        },
    )
    app.include_router(providers.router)
    # Added last, so it runs first and every later step gets the normalised path.
    app.add_middleware(NormalizePathMiddleware)
    return app
