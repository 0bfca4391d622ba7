"""The generation service's FastAPI app: image generation and its records."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI

from generation_service.metrics import queue_refresher
from generation_service.models import SCHEMA
from generation_service.routes import catalogue, files, images, openai_compat
from generation_service.runtime import open_runtime
from generation_service.settings import Settings, get_settings
from router_common.app import create_service_app, database_check, redis_check
from router_common.db import upgrade_to_head
from router_common.logging import configure_logging

SERVICE_DIR = Path(__file__).resolve().parent.parent
log = structlog.get_logger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if settings.migrate_on_start:
        await asyncio.to_thread(
            upgrade_to_head, SERVICE_DIR, settings.database_url, SCHEMA
        )
    async with open_runtime(settings) as runtime:
        app.state.runtime = runtime
        # The names the routes and shared dependencies read.
        app.state.session_factory = runtime.session_factory
        app.state.redis = runtime.redis
        app.state.peers = runtime.peers
        app.state.store = runtime.store
        app.state.runner = runtime.runner
        app.state.limiter = runtime.limiter
        # Jobs still running after their client got its response (past a deadline).
        app.state.jobs = set()
        app.state.metrics_refreshers.append(queue_refresher(runtime.session_factory))
        log.info("service_started", port=settings.http_port)
        try:
            yield
        finally:
            log.info("service_stopping", jobs_in_flight=len(app.state.jobs))
            if app.state.jobs:
                await asyncio.wait(
                    app.state.jobs, timeout=settings.shutdown_grace_seconds
                )
    log.info("service_stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("generation", settings.log_level)
    app = create_service_app(
        service="generation",
        settings=settings,
        title="Image Router generation service",
        description="Image generation across providers, with fallback and stored "
        "images.",
        lifespan=lifespan,
        readiness_checks=lambda app: {
            "database": database_check(app.state.runtime.engine),
            "redis": redis_check(app.state.redis),
            "keys": app.state.peers.keys_ready,
            "providers": app.state.peers.providers_ready,
        },
    )
    app.include_router(catalogue.router)
    app.include_router(images.router)
    app.include_router(openai_compat.router)
    app.include_router(files.router)
    return app
