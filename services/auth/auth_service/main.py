"""The auth service's FastAPI app: users, passwords and JWTs."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service import repository
from auth_service.models import SCHEMA
from auth_service.passwords import Passwords
from auth_service.routes import profile, users
from auth_service.settings import Settings, get_settings
from router_common.app import (
    create_redis,
    create_service_app,
    database_check,
    redis_check,
)
from router_common.db import create_engine, create_session_factory, upgrade_to_head
from router_common.errors import ServiceUnavailableError
from router_common.logging import configure_logging
from router_common.tokens import raise_token_version

SERVICE_DIR = Path(__file__).resolve().parent.parent
log = structlog.get_logger(__name__)


class AdminOutcome(enum.Enum):
    CREATED = "created"
    ALREADY_ADMIN = "already_admin"
    # A plain user owns the email, and it stays a plain user.
    TAKEN_BY_USER = "taken_by_user"


async def ensure_admin(app: FastAPI, email: str, password: str) -> AdminOutcome:
    """Create an admin account with `email` unless that email has an account."""
    async with app.state.session_factory() as session:
        existing = await repository.get_by_email(session, email)
        if existing is not None:
            if existing.role != "admin":
                log.warning("admin_email_taken_by_user", user_id=str(existing.id))
                return AdminOutcome.TAKEN_BY_USER
            return AdminOutcome.ALREADY_ADMIN
        password_hash = await app.state.passwords.hash(password)
        user = await repository.create_user(
            session,
            email=email,
            password_hash=password_hash,
            name="Admin",
            role="admin",
        )
        log.info("admin_created", user_id=str(user.id))
        return AdminOutcome.CREATED


async def restore_token_versions(session: AsyncSession, redis: Redis) -> int:
    """Copy every revoked account's token version from Postgres into Redis.

    Protects against a Redis that lost its data: without this, tokens revoked
    by logout or password change would pass again. Returns the accounts seen.
    """
    restored = 0
    async for batch in repository.revoked_token_versions(session):
        await asyncio.gather(
            *(
                raise_token_version(redis, str(user_id), version)
                for user_id, version in batch
            )
        )
        restored += len(batch)
    return restored


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
    async with app.state.session_factory() as session:
        try:
            restored = await restore_token_versions(session, app.state.redis)
        except ServiceUnavailableError as error:
            # Each login raises its account's version again; /readyz reports Redis.
            log.error("token_versions_not_restored", error=error.message)
        else:
            log.info("token_versions_restored", accounts=restored)
    log.info("service_started", port=settings.http_port)
    try:
        yield
    finally:
        log.info("service_stopping")
        await app.state.redis.aclose()
        await app.state.engine.dispose()
        log.info("service_stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("auth", settings.log_level)
    app = create_service_app(
        service="auth",
        settings=settings,
        title="Image Router auth service",
        description=(
            "Users, passwords and JWTs. Every response uses the envelope "
            '`{"success": true, "data": ...}` or `{"success": false, "error": '
            '{"type", "message", "details"}}`.'
        ),
        lifespan=lifespan,
        readiness_checks=lambda app: {
            "database": database_check(app.state.engine),
            "redis": redis_check(app.state.redis),
        },
    )
    app.include_router(users.router)
    app.include_router(profile.router)
    app.openapi = lambda: _openapi_without_422(app)  # type: ignore[method-assign]
    return app


def _openapi_without_422(app: FastAPI) -> dict[str, Any]:
    # FastAPI documents a 422 for every body, but invalid bodies get 400 in the
    # router's envelope (documented per route), so the 422 entries are dropped.
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for path in schema["paths"].values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
