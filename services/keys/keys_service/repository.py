"""Data access for API keys."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from keys_service.models import ApiKey


class InvalidCursorError(ValueError):
    pass


def encode_cursor(record: ApiKey) -> str:
    """Encode an opaque cursor for the keys after `record`, newest first."""
    position = [record.created_at.isoformat(), str(record.id)]
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, key_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        position = datetime.fromisoformat(created_at), uuid.UUID(key_id)
    except (ValueError, TypeError) as error:
        raise InvalidCursorError(cursor) from error
    if position[0].tzinfo is None:
        raise InvalidCursorError(cursor)
    return position


async def list_page(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[ApiKey], str | None]:
    """Return up to `limit` keys of a user, newest first, and the next cursor.

    Raises `InvalidCursorError` for a cursor this function did not issue.
    """
    query = select(ApiKey).where(ApiKey.user_id == user_id)
    if cursor is not None:
        created_at, key_id = decode_cursor(cursor)
        query = query.where(tuple_(ApiKey.created_at, ApiKey.id) < (created_at, key_id))
    query = query.order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(limit + 1)

    records = list(await session.scalars(query))
    if len(records) <= limit:
        return records, None
    records = records[:limit]
    return records, encode_cursor(records[-1])


async def get_owned(
    session: AsyncSession, user_id: uuid.UUID, key_id: uuid.UUID
) -> ApiKey | None:
    return await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
    )


async def get_by_hash(session: AsyncSession, key_hash: str) -> ApiKey | None:
    return await session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))


async def lock_user_keys(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Serialise key creation per user until the transaction ends.

    Without it, concurrent creations could all pass the count check.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:user_id, 0))"),
        {"user_id": str(user_id)},
    )


async def count_for_user(session: AsyncSession, user_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id)
    )
    return int(count or 0)


async def update_owned(
    session: AsyncSession,
    user_id: uuid.UUID,
    key_id: uuid.UUID,
    changes: dict[str, Any],
) -> ApiKey | None:
    """Apply `changes` and raise the version by one; None when not found."""
    statement = (
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.user_id == user_id)
        .values(**changes, version=ApiKey.version + 1)
        .returning(ApiKey)
        .execution_options(synchronize_session=False)
    )
    return await session.scalar(statement)


async def delete_owned(
    session: AsyncSession, user_id: uuid.UUID, key_id: uuid.UUID
) -> int | None:
    """Delete a key and return its last version; None when not found."""
    statement = (
        delete(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.user_id == user_id)
        .returning(ApiKey.version)
    )
    return await session.scalar(statement)
