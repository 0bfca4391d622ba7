"""Database plumbing: async engines and Alembic migrations per service schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        database_url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(service_dir: Path, database_url: str, schema: str) -> Config:
    """Alembic configuration for one service, its scripts and its schema."""
    config = Config()
    config.set_main_option("script_location", str(service_dir / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url)
    config.attributes["schema"] = schema
    return config


def upgrade_to_head(service_dir: Path, database_url: str, schema: str) -> None:
    """Apply every pending migration of one service.

    Blocking, and it starts its own event loop: call it through `asyncio.to_thread`.
    """
    command.upgrade(alembic_config(service_dir, database_url, schema), "head")
