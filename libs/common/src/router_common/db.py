"""Database plumbing: async engines and Alembic migrations per service schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def create_engine(
    database_url: str, *, pool_size: int = 10, max_overflow: int = 10
) -> AsyncEngine:
    """Build a pooled engine that hands out only connections still open.

    SQLAlchemy's `pool_pre_ping` sends a query on every checkout, which cost
    about 1.5 ms per transaction in the benchmark. Instead, a checkout checks
    with the driver whether the connection's socket has closed (a restarted or
    stopped Postgres closes every connection), which needs no round trip. The
    pool then opens a new one. A connection that breaks unnoticed fails its
    statement; through SQLAlchemy, the pool is then discarded, and through the
    driver directly (generation's `job_sql`), the next checkout replaces it.

    Overflow connections are closed when they are returned, so a process that
    is often above `pool_size` opens a Postgres connection (a new backend
    process) on many of its requests; size the pool to the busy process's
    concurrency instead.
    """
    engine = create_async_engine(
        database_url, pool_size=pool_size, max_overflow=max_overflow
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    driver = getattr(dbapi_connection, "driver_connection", None)
    is_closed = getattr(driver, "is_closed", None)
    if is_closed is not None and is_closed():
        raise DisconnectionError("connection closed by the server")


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
