"""Dependencies every service uses, as `Annotated` aliases.

They read what the service's lifespan put on `app.state`: `session_factory`
and `redis`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.session_factory() as session:
        yield session


def _redis(request: Request) -> Redis:
    return request.app.state.redis


SessionDep = Annotated[AsyncSession, Depends(_session)]
RedisDep = Annotated[Redis, Depends(_redis)]
