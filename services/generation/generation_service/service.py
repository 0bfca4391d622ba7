"""The generation use cases shared by the router's API and the OpenAI surface."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from generation_service.adapters import check_model_rules
from generation_service.auth import Principal
from generation_service.jobs import JobStore
from generation_service.limits import Limiter, Reservation
from generation_service.models import Attempt, Generation
from generation_service.runner import (
    Candidates,
    GenerationRunner,
    RunOutcome,
    attempt_summary,
)
from generation_service.schemas import (
    AttemptOut,
    GenerationOut,
    GenerationRequest,
    ImageOut,
    ProviderRef,
)
from router_common.errors import (
    NotFoundError,
    RequestTimeoutError,
    ValidationError,
    error_from_record,
)

MAX_IDEMPOTENCY_KEY_LENGTH = 255


@dataclass(slots=True)
class GenerateResult:
    generation: Generation
    # True when the job was queued and the client got 202 at once.
    accepted: bool = False
    # Image bytes by stored file name, for responses that carry base64.
    inline: dict[str, bytes] = field(default_factory=dict)
    # X-RateLimit-* headers of the tightest limit that applied.
    headers: dict[str, str] = field(default_factory=dict)


def idempotency_key(request: Request) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_LENGTH or not value.isprintable():
        raise ValidationError(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable "
            "characters",
            details={"fields": [{"field": "Idempotency-Key", "message": "Invalid"}]},
        )
    return value


def wants_async(request: Request, body_async: bool) -> bool:
    prefer = request.headers.get("prefer", "")
    tokens = {part.strip().lower() for part in prefer.split(",")}
    return body_async or "respond-async" in tokens


async def generate(
    request: Request, body: GenerationRequest, caller: Principal, *, run_async: bool
) -> GenerateResult:
    """Create a generation and run it inline, or queue it for a worker.

    A synchronous run that passes the overall deadline returns 504 with the
    generation id; the job goes on in this process (or, if the process dies, in a
    worker once its lease expires), so its result can still be read later.
    """
    runner: GenerationRunner = request.app.state.runner
    limiter: Limiter = request.app.state.limiter
    key = idempotency_key(request)
    # The model's own rules reject a bad request before anything is counted.
    check_model_rules(
        prompt=body.prompt,
        size=body.size,
        model=body.model,
        quality=body.quality,
        style=body.style,
    )
    if key is not None:
        existing = await runner.jobs.find_by_idempotency_key(caller.user_id, key, body)
        if existing is not None:
            return await _replay(request, runner.jobs, existing, run_async)

    # A request over a limit is rejected whole, before any provider call. The
    # limits come before selection, because a synchronous request's selection
    # takes the first provider's call slot in the same registry call. A request
    # that no provider can serve is then taken out of the limits again.
    reservation = await limiter.reserve(caller, body.n)
    headers = reservation.decision.headers() if reservation.decision else {}
    try:
        # With an Idempotency-Key, the job may turn out to belong to an earlier
        # request, so no slot is taken that the run might not use.
        candidates = await runner.select(
            body, take_first_slot=not run_async and key is None
        )
    except BaseException:
        await limiter.cancel(reservation)
        raise
    try:
        generation, created = await runner.jobs.create(
            body,
            user_id=caller.user_id,
            api_key_id=caller.api_key_id,
            run_here=not run_async,
            idempotency_key=key,
            quota=reservation.as_record(),
        )
    except BaseException:
        await limiter.give_back(reservation)
        raise
    if not created:
        # Another request with the same key won the race and owns the job. A
        # replay counts against no limit, so this request is taken out whole.
        await limiter.cancel(reservation)
        return await _replay(request, runner.jobs, generation, run_async)
    if run_async:
        return GenerateResult(generation, accepted=True, headers=headers)

    task = asyncio.create_task(run_and_settle(runner, limiter, generation, candidates))
    request.app.state.jobs.add(task)
    task.add_done_callback(request.app.state.jobs.discard)
    try:
        outcome = await asyncio.wait_for(
            asyncio.shield(task), runner.settings.generation_deadline_seconds
        )
    except TimeoutError:
        raise _deadline_error(generation.id, headers) from None

    if outcome.error is not None:
        outcome.error.headers.update(headers)
        raise outcome.error
    inline = {image.stored.file_name: image.data for image in outcome.images}
    return GenerateResult(outcome.generation, inline=inline, headers=headers)


async def run_and_settle(
    runner: GenerationRunner,
    limiter: Limiter,
    generation: Generation,
    candidates: Candidates,
) -> RunOutcome:
    """Run a job; give its images back to the quotas when it produced none."""
    outcome = await runner.run(generation, candidates)
    if outcome.error is not None:
        await limiter.give_back(Reservation.from_record(generation.options))
    return outcome


async def _replay(
    request: Request, jobs: JobStore, generation: Generation, run_async: bool
) -> GenerateResult:
    """Respond to a repeated request (same Idempotency-Key and body) from its job."""
    if run_async:
        return GenerateResult(generation, accepted=True)
    finished = await jobs.wait_finished(
        generation.id, jobs.settings.generation_deadline_seconds
    )
    if finished.status == "failed":
        record = finished.error or {}
        raise error_from_record(
            str(record.get("type")),
            str(record.get("message") or "Generation failed"),
            {
                "generationId": str(finished.id),
                "attempts": [attempt_summary(a) for a in finished.attempts],
            },
        )
    if finished.status != "succeeded":
        raise _deadline_error(finished.id)
    inline = {}
    if finished.response_format == "b64_json":
        store = request.app.state.store
        inline = {
            image.file_name: await store.read(image.file_name)
            for image in finished.images
        }
    return GenerateResult(finished, inline=inline)


def _deadline_error(
    generation_id: uuid.UUID, headers: dict[str, str] | None = None
) -> RequestTimeoutError:
    return RequestTimeoutError(
        "The generation did not finish in time; poll it by its id",
        details={"generationId": str(generation_id)},
        headers=headers,
    )


async def get_owned(
    request: Request, generation_id: str, caller: Principal
) -> Generation:
    """Load a generation of the caller's; anyone else's is 404, like a missing one."""
    try:
        parsed = uuid.UUID(generation_id)
    except ValueError:
        raise NotFoundError("Generation not found") from None
    async with request.app.state.session_factory() as session:
        generation = await session.get(Generation, parsed)
    if generation is None or str(generation.user_id) != caller.user_id:
        raise NotFoundError("Generation not found")
    return generation


def to_out(
    generation: Generation,
    store_url: Callable[[str], str],
    inline: dict[str, bytes] | None = None,
) -> GenerationOut:
    """Build the generation object. Images carry base64 only when their bytes are
    at hand for a `b64_json` request; otherwise their stored URL."""
    inline = inline or {}
    images = []
    for image in generation.images:
        data = inline.get(image.file_name)
        if data is not None and generation.response_format == "b64_json":
            encoded = base64.b64encode(data).decode()
            images.append(
                ImageOut(b64_json=encoded, revised_prompt=image.revised_prompt)
            )
        else:
            images.append(
                ImageOut(
                    url=store_url(image.file_name), revised_prompt=image.revised_prompt
                )
            )
    provider = (
        ProviderRef(id=generation.provider_id, name=generation.provider_name)
        if generation.provider_id and generation.provider_name
        else None
    )
    return GenerationOut(
        id=generation.id,
        status=generation.status,
        progress=generation.progress,
        prompt=generation.prompt,
        n=generation.n,
        size=generation.size,
        model=generation.model,
        response_format=generation.response_format,
        provider=provider,
        images=images,
        attempts=[_attempt_out(attempt) for attempt in generation.attempts],
        cost=generation.cost,
        created_at=generation.created_at,
        completed_at=generation.completed_at,
        error=generation.error,
    )


def _attempt_out(attempt: Attempt) -> AttemptOut:
    return AttemptOut(
        provider=attempt.provider_name,
        outcome=attempt.outcome,
        error_type=attempt.error_type,
        latency_ms=attempt.latency_ms,
        notes=attempt.notes,
    )
