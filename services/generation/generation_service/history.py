"""Read models over past generations: the caller's list and usage figures."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, cast, func, or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.types import Date

from generation_service.models import Attempt, Generation, Image
from generation_service.schemas import UsageDay, UsageOut, UsageProvider
from router_common.errors import ValidationError


def encode_cursor(generation: Generation) -> str:
    raw = f"{generation.created_at.isoformat()}|{generation.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, _, identifier = (
            base64.urlsafe_b64decode(padded).decode().partition("|")
        )
        return datetime.fromisoformat(created), uuid.UUID(identifier)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError(
            "Invalid cursor; pass the nextCursor of a previous page",
            details={"fields": [{"field": "cursor", "message": "Invalid cursor"}]},
        ) from None


async def list_generations(
    session_factory: async_sessionmaker,
    *,
    user_id: str,
    limit: int,
    cursor: str | None,
    status: str | None,
    provider: str | None,
) -> tuple[list[Generation], str | None]:
    """Return one page of a user's generations, newest first (keyset pagination)."""
    query = select(Generation).where(Generation.user_id == uuid.UUID(user_id))
    if status:
        query = query.where(Generation.status == status)
    if provider:
        query = query.where(Generation.provider_name == provider)
    if cursor:
        created_at, identifier = decode_cursor(cursor)
        query = query.where(
            or_(
                Generation.created_at < created_at,
                and_(Generation.created_at == created_at, Generation.id < identifier),
            )
        )
    query = query.order_by(Generation.created_at.desc(), Generation.id.desc())
    async with session_factory() as session:
        rows = list(await session.scalars(query.limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def usage(
    session_factory: async_sessionmaker, *, user_id: str, days: int
) -> UsageOut:
    since = datetime.now(UTC) - timedelta(days=days)
    owned = and_(
        Generation.user_id == uuid.UUID(user_id),
        Generation.status == "succeeded",
        Generation.completed_at >= since,
    )
    day = cast(func.timezone("UTC", Generation.completed_at), Date)
    by_day = (
        select(day, func.count(Image.id), func.coalesce(func.sum(Image.cost), 0))
        .select_from(Generation)
        .join(Image, Image.generation_id == Generation.id)
        .where(owned)
        .group_by(day)
        .order_by(day)
    )
    # The provider's name as recorded on its successful attempt, so that the
    # figures stay readable after a provider is deleted.
    provider_name = (
        select(Attempt.provider_name)
        .where(Attempt.generation_id == Generation.id)
        .where(Attempt.provider_id == Image.provider_id)
        .where(Attempt.outcome == "success")
        .limit(1)
        .scalar_subquery()
    )
    by_provider = (
        select(
            provider_name, func.count(Image.id), func.coalesce(func.sum(Image.cost), 0)
        )
        .select_from(Generation)
        .join(Image, Image.generation_id == Generation.id)
        .where(owned)
        .group_by(provider_name)
        .order_by(provider_name)
    )
    async with session_factory() as session:
        day_rows = (await session.execute(by_day)).all()
        provider_rows = (await session.execute(by_provider)).all()

    return UsageOut(
        days=days,
        total_images=sum(row[1] for row in day_rows),
        total_cost=sum((Decimal(row[2]) for row in day_rows), Decimal(0)),
        by_day=[
            UsageDay(date=row[0].isoformat(), images=row[1], cost=Decimal(row[2]))
            for row in day_rows
        ],
        by_provider=[
            UsageProvider(
                provider=row[0] or "unknown", images=row[1], cost=Decimal(row[2])
            )
            for row in provider_rows
        ],
    )
