"""Data access for users."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.models import User
from router_common.errors import ConflictError

DUPLICATE_EMAIL_MESSAGE = "An account with this email already exists"


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.lower()))


async def get_by_id(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password_hash: str,
    name: str | None,
    role: str,
) -> User:
    user = User(email=email.lower(), password_hash=password_hash, name=name, role=role)
    session.add(user)
    await commit_unique_email(session)
    await session.refresh(user)
    return user


async def commit_unique_email(session: AsyncSession) -> None:
    """Commit, or raise 409 `conflict` if the email belongs to another account."""
    try:
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        raise ConflictError(DUPLICATE_EMAIL_MESSAGE) from error


async def raise_token_version(
    session: AsyncSession, user_id: uuid.UUID, version: int
) -> None:
    """Store `version` as the user's token version unless it is already higher."""
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(token_version=func.greatest(User.token_version, version))
    )
    await session.commit()


async def revoked_token_versions(
    session: AsyncSession, batch_size: int = 1000
) -> AsyncIterator[list[tuple[uuid.UUID, int]]]:
    """Yield `(user id, token version)` of every user whose tokens were revoked."""
    result = await session.stream(
        select(User.id, User.token_version)
        .where(User.token_version > 0)
        .execution_options(yield_per=batch_size)
    )
    async for partition in result.partitions(batch_size):
        yield [(row.id, row.token_version) for row in partition]
