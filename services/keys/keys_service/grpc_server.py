"""The gRPC KeyService: verification of presented API keys."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import structlog
from sqlalchemy.ext.asyncio import async_sessionmaker

from imagerouter.v1 import keys_pb2, keys_pb2_grpc
from keys_service import repository
from keys_service.secrets import KEY_PREFIX, hash_key, hashes_match

log = structlog.get_logger(__name__)
MAX_PRESENTED_KEY_LENGTH = 256


class KeyService(keys_pb2_grpc.KeyServiceServicer):
    def __init__(self, session_factory: async_sessionmaker, pepper: str) -> None:
        self._session_factory = session_factory
        self._pepper = pepper

    async def VerifyKey(  # noqa: N802 - name fixed by the proto
        self, request: keys_pb2.VerifyKeyRequest, context: grpc.aio.ServicerContext
    ) -> keys_pb2.VerifyKeyResponse:
        presented = request.key
        if (
            not presented.startswith(KEY_PREFIX)
            or len(presented) > MAX_PRESENTED_KEY_LENGTH
        ):
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown API key")

        computed = hash_key(presented, self._pepper)
        async with self._session_factory() as session:
            record = await repository.get_by_hash(session, computed)
        if record is None or not hashes_match(record.key_hash, computed):
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown API key")
        if not record.is_active:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "API key is inactive"
            )
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "API key has expired"
            )

        return keys_pb2.VerifyKeyResponse(
            key_id=str(record.id),
            user_id=str(record.user_id),
            user_role=record.owner_role,
            scopes=list(record.scopes),
            rate_limit=record.rate_limit or 0,
            daily_image_limit=record.daily_image_limit or 0,
            version=record.version,
        )
