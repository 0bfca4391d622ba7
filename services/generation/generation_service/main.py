"""The generation service's FastAPI app: image generation and its records."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import structlog
from fastapi import FastAPI

from generation_service.models import SCHEMA
from generation_service.peers import Peers
from generation_service.routes import images, openai_compat
from generation_service.runner import GenerationRunner
from generation_service.settings import Settings, get_settings
from generation_service.storage import ImageStore
from router_common.app import (
    create_redis,
    create_service_app,
    database_check,
    redis_check,
)
from router_common.db import create_engine, create_session_factory, upgrade_to_head
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
    app.state.engine = create_engine(settings.database_url)
    app.state.session_factory = create_session_factory(app.state.engine)
    app.state.redis = create_redis(settings.redis_url)
    app.state.peers = Peers(
        keys_addr=settings.keys_grpc_addr,
        providers_addr=settings.providers_grpc_addr,
        token=settings.internal_service_token,
        timeout=settings.grpc_timeout_seconds,
    )
    app.state.store = ImageStore(settings.images_dir, settings.public_base_url)
    # Redirects are never followed: a provider could point one inside the network.
    client = httpx.AsyncClient(
        follow_redirects=False,
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
    )
    app.state.runner = GenerationRunner(
        settings=settings,
        peers=app.state.peers,
        store=app.state.store,
        client=client,
        session_factory=app.state.session_factory,
        instance_id=f"{socket.gethostname()}:{os.getpid()}",
    )
    # Jobs still running after their client has been answered (past a deadline).
    app.state.jobs = set()
    log.info("service_started", port=settings.http_port)
    try:
        yield
    finally:
        log.info("service_stopping", jobs_in_flight=len(app.state.jobs))
        if app.state.jobs:
            await asyncio.wait(app.state.jobs, timeout=settings.shutdown_grace_seconds)
        await client.aclose()
        await app.state.peers.close()
        await app.state.redis.aclose()
        await app.state.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("generation", settings.log_level)
    app = create_service_app(
        title="Image Router generation service",
        description="Image generation across providers, with fallback and stored "
        "images.",
        lifespan=lifespan,
        readiness_checks=lambda app: {
            "database": database_check(app.state.engine),
            "redis": redis_check(app.state.redis),
            "keys": app.state.peers.keys_ready,
            "providers": app.state.peers.providers_ready,
        },
    )
    app.state.settings = settings
    app.include_router(images.router)
    app.include_router(openai_compat.router)
    return app
