"""The gRPC KeyService: verification of presented API keys."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import structlog
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import async_sessionmaker

from imagerouter.v1 import keys_pb2, keys_pb2_grpc
from keys_service import repository
from keys_service.last_used import LastUsedRecorder
from keys_service.models import ApiKey
from keys_service.secrets import KEY_PREFIX, hash_key, hashes_match
from keys_service.versions import KeyVersions

log = structlog.get_logger(__name__)
MAX_PRESENTED_KEY_LENGTH = 256


class KeyService(keys_pb2_grpc.KeyServiceServicer):
    def __init__(
        self,
        session_factory: async_sessionmaker,
        pepper: str,
        versions: KeyVersions,
        last_used: LastUsedRecorder,
    ) -> None:
        self._session_factory = session_factory
        self._pepper = pepper
        self._versions = versions
        self._last_used = last_used

    async def VerifyKey(  # noqa: N802 - name fixed by the proto
        self, request: keys_pb2.VerifyKeyRequest, context: grpc.aio.ServicerContext
    ) -> keys_pb2.VerifyKeyResponse:
        presented = request.key
        if (
            not presented.startswith(KEY_PREFIX)
            or len(presented) > MAX_PRESENTED_KEY_LENGTH
        ):
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown API key")

        # The row is found through the unique index on the hash. The
        # constant-time comparison then confirms the match in code.
        computed = hash_key(presented, self._pepper)
        async with self._session_factory() as session:
            record = await repository.get_by_hash(session, computed)
        if record is None or not hashes_match(record.key_hash, computed):
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown API key")
        now = datetime.now(UTC)
        if not record.is_active:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "API key is inactive"
            )
        if record.expires_at is not None and record.expires_at <= now:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "API key has expired"
            )

        try:
            # Restores the Redis entry if Redis lost it. A change that the read
            # above missed raises the entry above this version before its
            # commit, so the caller's cache will not reuse this response.
            await self._versions.publish(record.id, record.version)
            await self._last_used.record(record.id, now)
        except RedisError as error:
            log.error("key_store_unavailable", key_id=str(record.id), error=str(error))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "key store unavailable")

        log.info("api_key_verified", key_id=str(record.id), version=record.version)
        return _response(record)


def _response(record: ApiKey) -> keys_pb2.VerifyKeyResponse:
    expires_at_ms = 0
    if record.expires_at is not None:
        expires_at_ms = int(record.expires_at.timestamp() * 1000)
    return keys_pb2.VerifyKeyResponse(
        key_id=str(record.id),
        user_id=str(record.user_id),
        user_role=record.owner_role,
        scopes=list(record.scopes),
        rate_limit=record.rate_limit or 0,
        daily_image_limit=record.daily_image_limit or 0,
        version=record.version,
        expires_at_unix_ms=expires_at_ms,
    )
