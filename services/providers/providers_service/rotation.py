"""`rotate-secrets`: re-encrypt every stored provider API key with the first key.

Rotation: put the new key first in PROVIDER_SECRET_KEYS and keep the old ones
after it, restart the services, run `python -m providers_service
rotate-secrets`, then drop the old keys and restart again.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from sqlalchemy import select

from providers_service.models import Provider
from providers_service.row_cache import mark_rows_changed
from providers_service.secrets import SecretBox
from providers_service.settings import get_settings
from router_common.app import create_redis
from router_common.db import create_engine, create_session_factory


def add_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    return lambda _args: asyncio.run(rotate_secrets())


async def rotate_secrets() -> int:
    settings = get_settings()
    if not settings.provider_secret_keys.strip():
        print("PROVIDER_SECRET_KEYS is empty; set the new key first, then the old ones")
        return 2
    box = SecretBox(settings.provider_secret_keys)
    engine = create_engine(settings.database_url)
    try:
        async with create_session_factory(engine)() as session:
            # Row locks keep a concurrent edit from writing a key in between.
            providers = await session.scalars(
                select(Provider).order_by(Provider.name).with_for_update()
            )
            count = 0
            for provider in providers:
                try:
                    rotated = box.rotate(provider.api_key_encrypted)
                except ValueError as error:
                    # Read before the rollback, which expires every loaded row.
                    which = f"{provider.id} ({provider.name})"
                    await session.rollback()
                    print(
                        f"Nothing changed: provider {which}: {error}; add the key "
                        "it was encrypted with to PROVIDER_SECRET_KEYS"
                    )
                    return 1
                provider.api_key_encrypted = rotated
                count += 1
            await session.commit()
        # Registries keep the old tokens in memory until the rows version changes.
        redis = create_redis(settings.redis_url)
        try:
            await mark_rows_changed(redis)
        finally:
            await redis.aclose()
    finally:
        await engine.dispose()
    print(f"Re-encrypted the API keys of {count} providers with the first key")
    return 0
