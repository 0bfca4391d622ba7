"""The auth service's FastAPI app: users, passwords and JWTs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI

from auth_service import repository
from auth_service.models import SCHEMA
from auth_service.passwords import Passwords
from auth_service.routes import users
from auth_service.settings import Settings, get_settings
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


async def ensure_admin(app: FastAPI, email: str, password: str) -> None:
    """Create the admin account from the settings unless it exists already."""
    async with app.state.session_factory() as session:
        existing = await repository.get_by_email(session, email)
        if existing is not None:
            if existing.role != "admin":
                log.warning("admin_email_taken_by_user", user_id=str(existing.id))
            return
        password_hash = await app.state.passwords.hash(password)
        user = await repository.create_user(
            session,
            email=email,
            password_hash=password_hash,
            name="Admin",
            role="admin",
        )
        log.info("admin_created", user_id=str(user.id))


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
    app.state.passwords = Passwords(settings)
    if settings.admin_email and settings.admin_password:
        await ensure_admin(app, settings.admin_email.lower(), settings.admin_password)
    log.info("service_started", port=settings.http_port)
    try:
        yield
    finally:
        log.info("service_stopping")
        await app.state.redis.aclose()
        await app.state.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("auth", settings.log_level)
    app = create_service_app(
        title="Image Router auth service",
        description="Users, passwords and JWTs.",
        lifespan=lifespan,
        readiness_checks=lambda app: {
            "database": database_check(app.state.engine),
            "redis": redis_check(app.state.redis),
        },
    )
    app.state.settings = settings
    app.include_router(users.router)
    return app
