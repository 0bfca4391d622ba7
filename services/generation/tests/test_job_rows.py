"""The job rows of a run as JobStore writes them: one INSERT to create, one
statement to record the result only while the lease is held."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from generation_service.jobs import JobStore, StoredResult
from generation_service.models import Attempt, Image
from generation_service.schemas import GenerationRequest
from generation_service.settings import Settings
from router_common.db import create_engine, create_session_factory
from router_common.errors import ProviderError
from stack import Stack

BODY = GenerationRequest.model_validate(
    {"prompt": "a quay", "n": 2, "size": "256x256", "response_format": "b64_json"}
)


def attempt(generation_id: uuid.UUID, provider_id: uuid.UUID, **fields) -> Attempt:
    values = {
        "id": uuid.uuid4(),
        "generation_id": generation_id,
        "provider_id": provider_id,
        "provider_name": "quay-provider",
        "outcome": "success",
        "error_type": None,
        "error_message": None,
        "status_code": 200,
        "latency_ms": 12,
        "images_requested": 2,
        "notes": None,
        "created_at": datetime.now(UTC),
        **fields,
    }
    return Attempt(**values)


def image(generation_id: uuid.UUID, provider_id: uuid.UUID, position: int) -> Image:
    return Image(
        id=uuid.uuid4(),
        generation_id=generation_id,
        position=position,
        file_name=f"{uuid.uuid4().hex}.png",
        content_type="image/png",
        width=256,
        height=256,
        byte_size=1000,
        provider_id=provider_id,
        cost=Decimal("0.020000"),
        revised_prompt=None,
    )


def test_only_lease_holder_records_result(stack: Stack):
    database_url = stack.profile.database_url
    settings = Settings.model_construct(database_url=database_url, job_lease_seconds=30)

    async def main() -> None:
        engine = create_engine(database_url)
        sessions = create_session_factory(engine)
        holder = JobStore(sessions, settings, "holder")
        other = JobStore(sessions, settings, "other")
        user_id = str(uuid.uuid4())
        provider_id = uuid.uuid4()
        try:
            generation, created = await holder.create(
                BODY, user_id=user_id, api_key_id=None, run_here=True
            )
            assert created and generation.created_at is not None
            stored = await holder.load(generation.id)
            assert stored.status == "running"
            assert stored.lease_owner == "holder"
            assert stored.options["quota"] is None
            assert stored.error is None

            # A process that does not hold the lease records nothing.
            lost = StoredResult(
                [attempt(generation.id, provider_id)],
                [image(generation.id, provider_id, 0)],
                None,
            )
            unchanged, recorded = await other.finish(generation.id, lost)
            assert not recorded
            assert unchanged.status == "running"
            assert unchanged.attempts == []
            assert unchanged.images == []

            result = StoredResult(
                [
                    attempt(
                        generation.id,
                        provider_id,
                        outcome="error",
                        error_type="provider_error",
                        error_message="HTTP 500",
                        status_code=500,
                        notes={"aspectRatio": "1:1"},
                    ),
                    attempt(generation.id, provider_id),
                ],
                [image(generation.id, provider_id, i) for i in range(2)],
                None,
            )
            finished, recorded = await holder.finish(generation.id, result)
            assert recorded
            assert finished.status == "succeeded"
            assert finished.progress == 100
            assert finished.cost == Decimal("0.040000")
            assert finished.provider_name == "quay-provider"
            assert finished.lease_owner is None

            reloaded = await holder.load(generation.id)
            assert [a.outcome for a in reloaded.attempts] == ["error", "success"]
            assert reloaded.attempts[0].notes == {"aspectRatio": "1:1"}
            assert [i.position for i in reloaded.images] == [0, 1]
            assert reloaded.error is None

            # A failed run of another job keeps its error as JSON.
            failed_job, _ = await holder.create(
                BODY, user_id=user_id, api_key_id=None, run_here=True
            )
            error = ProviderError("Every eligible provider failed (1 attempts)")
            failed, recorded = await holder.finish(
                failed_job.id,
                StoredResult([attempt(failed_job.id, provider_id)], [], error),
            )
            assert recorded and failed.status == "failed"
            assert failed.error == {
                "type": "provider_error",
                "message": "Every eligible provider failed (1 attempts)",
                "status": 502,
            }
            assert failed.cost == Decimal(0)
        finally:
            await engine.dispose()

        # SQL NULL, not JSON null, where a JSONB value is absent.
        connection = await asyncpg.connect(
            database_url.replace("postgresql+asyncpg://", "postgresql://")
        )
        try:
            nulls = await connection.fetchval(
                "SELECT count(*) FROM generation.attempts "
                "WHERE generation_id = $1 AND notes IS NULL",
                generation.id,
            )
            error_is_null = await connection.fetchval(
                "SELECT error IS NULL FROM generation.generations WHERE id = $1",
                generation.id,
            )
        finally:
            await connection.close()
        assert nulls == 1
        assert error_is_null

    asyncio.run(main())


def test_too_long_value_fails_whole_result(stack: Stack):
    database_url = stack.profile.database_url
    settings = Settings.model_construct(database_url=database_url, job_lease_seconds=30)

    async def main() -> None:
        engine = create_engine(database_url)
        store = JobStore(create_session_factory(engine), settings, "holder")
        try:
            generation, _ = await store.create(
                BODY, user_id=str(uuid.uuid4()), api_key_id=None, run_here=True
            )
            # provider_name is VARCHAR(64): a longer name is an error, not cut.
            too_long = attempt(generation.id, uuid.uuid4(), provider_name="p" * 65)
            with pytest.raises(asyncpg.StringDataRightTruncationError):
                await store.finish(generation.id, StoredResult([too_long], [], None))
            # Nothing of the result was written.
            unchanged = await store.load(generation.id)
            assert unchanged.status == "running"
            assert unchanged.attempts == []
        finally:
            await engine.dispose()

    asyncio.run(main())
