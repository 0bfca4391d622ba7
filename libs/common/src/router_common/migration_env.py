"""The body of every service's Alembic `env.py`.

Each service keeps its tables and its `alembic_version` table in its own schema.
Migrations run under a Postgres advisory lock per schema, so several replicas can
start at once: the first migrates, the others wait and then find nothing to do.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from sqlalchemy import Connection, MetaData, pool, text
from sqlalchemy.ext.asyncio import create_async_engine


def run_env(context: Any, target_metadata: MetaData) -> None:
    config = context.config
    schema = config.attributes.get("schema") or config.get_main_option("schema")
    url = config.get_main_option("sqlalchemy.url")
    options = {
        "target_metadata": target_metadata,
        "version_table_schema": schema,
        "include_schemas": True,
    }

    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: Connection) -> None:
        lock_id = zlib.crc32(f"migrations:{schema}".encode())
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
        try:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            connection.commit()
            context.configure(connection=connection, **options)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
            connection.commit()

    async def run_online() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run_online())
