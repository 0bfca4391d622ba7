"""Generation jobs in Postgres: creation, leases, claims and results.

Every generation is a job row. The process that runs it holds a lease
(`lease_owner`, `lease_expires_at`) and renews it while it works. A synchronous
request runs its job inline in the API process. Workers claim queued jobs, and
running jobs whose lease has expired because their process died, with
`FOR UPDATE SKIP LOCKED`, so that two workers never take the same job. A run
records its result only while it still holds the lease, so a job completes once
even if a slow process loses its lease to another worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from generation_service import job_sql
from generation_service.models import Attempt, Generation, IdempotencyKey, Image
from generation_service.schemas import GenerationRequest
from generation_service.settings import Settings
from router_common.errors import ConflictError, RouterError
from router_common.logging import current_request_id

log = structlog.get_logger(__name__)

CLAIMABLE_STATUSES = ("queued", "running")


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A run's result, ready to be written: its rows and the error, if any."""

    attempts: list[Attempt]
    images: list[Image]
    error: RouterError | None


def request_hash(body: GenerationRequest) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def request_from_job(generation: Generation) -> GenerationRequest:
    """Rebuild the request a queued or orphaned job was created from."""
    options = generation.options or {}
    return GenerationRequest.model_validate(
        {
            "prompt": generation.prompt,
            "n": generation.n,
            "size": generation.size,
            "response_format": generation.response_format,
            "model": generation.model,
            "quality": generation.quality,
            "style": generation.style,
            "user": options.get("user"),
            "provider": options.get("provider"),
            "routing": options.get("routing"),
        }
    )


class JobStore:
    def __init__(
        self, session_factory: async_sessionmaker, settings: Settings, instance_id: str
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.instance_id = instance_id

    def _lease_expiry(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.settings.job_lease_seconds)

    async def create(
        self,
        body: GenerationRequest,
        *,
        user_id: str,
        api_key_id: str | None,
        run_here: bool,
        idempotency_key: str | None = None,
        quota: dict[str, Any] | None = None,
    ) -> tuple[Generation, bool]:
        """Insert a job, running under this process's lease or queued for a worker.

        With an idempotency key, an earlier job made with the same key and body is
        returned instead, with `False` as the second value; the same key with
        another body is 409.
        """
        now = datetime.now(UTC)
        generation = Generation(
            id=uuid.uuid4(),
            user_id=uuid.UUID(user_id),
            api_key_id=uuid.UUID(api_key_id) if api_key_id else None,
            status="running" if run_here else "queued",
            progress=0,
            prompt=body.prompt,
            n=body.n,
            size=body.size,
            model=body.model,
            quality=body.quality,
            style=body.style,
            response_format=body.response_format,
            options={
                "provider": body.provider,
                "routing": body.routing,
                "user": body.user,
                # What the request took from the quotas, given back on failure.
                "quota": quota,
                # So that a worker's log lines for this job carry the request id.
                "request_id": current_request_id(),
            },
            cost=Decimal(0),
            run_count=1 if run_here else 0,
            lease_owner=self.instance_id if run_here else None,
            lease_expires_at=self._lease_expiry() if run_here else None,
            started_at=now if run_here else None,
            attempts=[],
            images=[],
        )
        if idempotency_key is None:
            async with self._driver_connection() as connection:
                generation.created_at = await connection.fetchval(
                    job_sql.INSERT_JOB, *job_sql.job_arguments(generation)
                )
            return generation, True
        async with self.session_factory() as session:
            session.add(generation)
            await session.flush()
            existing = await self._bind_key(session, generation, idempotency_key, body)
            if existing is not None:
                await session.rollback()
                return await self.load(existing), False
            await session.commit()
        return generation, True

    @asynccontextmanager
    async def _driver_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """Yield a pooled connection's asyncpg connection, outside any
        transaction, for the single statements of `job_sql`."""
        engine = self.session_factory.kw["bind"]
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            yield raw.driver_connection

    async def _bind_key(
        self,
        session: AsyncSession,
        generation: Generation,
        key: str,
        body: GenerationRequest,
    ) -> uuid.UUID | None:
        """Bind `key` to `generation`; return the generation it was bound to before."""
        digest = request_hash(body)
        inserted = await session.scalar(
            insert(IdempotencyKey)
            .values(
                user_id=generation.user_id,
                key=key,
                request_hash=digest,
                generation_id=generation.id,
            )
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.generation_id)
        )
        if inserted is not None:
            return None
        existing = await session.get(IdempotencyKey, (generation.user_id, key))
        assert existing is not None
        if existing.request_hash != digest:
            raise _key_reused()
        return existing.generation_id

    async def find_by_idempotency_key(
        self, user_id: str, key: str, body: GenerationRequest
    ) -> Generation | None:
        """Return the job an earlier request with this key made.

        Raises 409 when the key came with another body.
        """
        async with self.session_factory() as session:
            bound = await session.get(IdempotencyKey, (uuid.UUID(user_id), key))
        if bound is None:
            return None
        if bound.request_hash != request_hash(body):
            raise _key_reused()
        return await self.load(bound.generation_id)

    async def load(self, generation_id: uuid.UUID) -> Generation:
        async with self.session_factory() as session:
            generation = await session.get(Generation, generation_id)
        assert generation is not None
        return generation

    async def wait_finished(
        self, generation_id: uuid.UUID, timeout: float
    ) -> Generation:
        """Poll a job another request or worker runs until it ends or `timeout`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with self.session_factory() as session:
                generation = await session.get(
                    Generation, generation_id, populate_existing=True
                )
            assert generation is not None
            if generation.status in ("succeeded", "failed"):
                return generation
            if asyncio.get_running_loop().time() >= deadline:
                return generation
            await asyncio.sleep(0.2)

    async def claim_next(self) -> Generation | None:
        """Take the oldest queued or orphaned job, or None when there is none."""
        now = datetime.now(UTC)
        async with self.session_factory() as session:
            generation = await session.scalar(
                select(Generation)
                .where(
                    or_(
                        Generation.status == "queued",
                        (Generation.status == "running")
                        & (Generation.lease_expires_at < now),
                    )
                )
                .order_by(Generation.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if generation is None:
                return None
            generation.status = "running"
            generation.lease_owner = self.instance_id
            generation.lease_expires_at = self._lease_expiry()
            generation.run_count += 1
            generation.started_at = generation.started_at or now
            await session.commit()
        log.info(
            "job_claimed",
            generation_id=str(generation.id),
            request_id=(generation.options or {}).get("request_id"),
            run=generation.run_count,
        )
        return generation

    async def renew_while_running(self, generation_id: uuid.UUID) -> None:
        """Renew this process's lease on a job until cancelled."""
        interval = self.settings.job_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            async with self.session_factory() as session:
                await session.execute(
                    update(Generation)
                    .where(Generation.id == generation_id)
                    .where(Generation.lease_owner == self.instance_id)
                    .values(lease_expires_at=self._lease_expiry())
                )
                await session.commit()

    async def release(self, generation_id: uuid.UUID) -> None:
        """Give a job back at once (on shutdown), so another worker resumes it."""
        async with self.session_factory() as session:
            await session.execute(
                update(Generation)
                .where(Generation.id == generation_id)
                .where(Generation.lease_owner == self.instance_id)
                .values(status="queued", lease_owner=None, lease_expires_at=None)
            )
            await session.commit()

    async def set_progress(self, generation_id: uuid.UUID, progress: int) -> None:
        async with self.session_factory() as session:
            await session.execute(
                update(Generation)
                .where(Generation.id == generation_id)
                .where(Generation.lease_owner == self.instance_id)
                .values(progress=max(0, min(progress, 99)))
            )
            await session.commit()

    async def finish(
        self, generation_id: uuid.UUID, result: StoredResult
    ) -> tuple[Generation, bool]:
        """Record a run's result if this process still holds the job.

        Returns the generation and whether the result was recorded; a run that
        lost its lease records nothing, because another run owns the job now.
        One statement, so one round trip and atomic without a transaction: the
        job's UPDATE, conditional on the lease and returning the row, and one
        INSERT each for attempts and images that adds rows only when the UPDATE
        matched. The returned generation is built from that row and the run's
        own rows, so it is detached and nothing is read back.
        """
        arguments = job_sql.finish_arguments(
            generation_id,
            self.instance_id,
            _result_values(result),
            result.attempts,
            result.images,
        )
        async with self._driver_connection() as connection:
            row = await connection.fetchrow(job_sql.FINISH_JOB, *arguments)
        if row is None:
            log.warning("job_lease_lost", generation_id=str(generation_id))
            return await self.load(generation_id), False
        generation = Generation(**dict(row.items()))
        generation.attempts = list(result.attempts)
        generation.images = list(result.images)
        return generation, True

    async def give_up(self, generation: Generation, message: str) -> None:
        """Mark a job failed without a run, e.g. after too many runs."""
        async with self.session_factory() as session:
            await session.execute(
                update(Generation)
                .where(Generation.id == generation.id)
                .values(
                    status="failed",
                    lease_owner=None,
                    lease_expires_at=None,
                    completed_at=func.now(),
                    error={"type": "internal_error", "message": message, "status": 500},
                )
            )
            await session.commit()


def _key_reused() -> ConflictError:
    return ConflictError(
        "This Idempotency-Key was used with a different request body",
        code="idempotency_key_reused",
    )


def _result_values(result: StoredResult) -> dict[str, Any]:
    """Column values of the job row once the run's result is recorded."""
    succeeded = result.error is None
    values: dict[str, Any] = {
        "status": "succeeded" if succeeded else "failed",
        "completed_at": datetime.now(UTC),
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if succeeded:
        values["progress"] = 100
    if result.images:
        first = result.images[0]
        values["provider_id"] = first.provider_id
        values["provider_name"] = _provider_name(result, first.provider_id)
        values["cost"] = sum((image.cost for image in result.images), Decimal(0))
    if result.error is not None:
        values["error"] = error_record(result.error)
    return values


def _provider_name(result: StoredResult, provider_id: uuid.UUID) -> str | None:
    for attempt in result.attempts:
        if attempt.provider_id == provider_id and attempt.outcome == "success":
            return attempt.provider_name
    return None


def error_record(error: RouterError) -> dict[str, Any]:
    return {
        "type": error.error_type,
        "message": error.message,
        "status": error.status_code,
    }
