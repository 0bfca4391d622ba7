"""The generation use cases shared by the router's API and the OpenAI surface."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable

from fastapi import Request

from generation_service.auth import Principal
from generation_service.models import Attempt, Generation
from generation_service.runner import GenerationRunner, ProducedImage
from generation_service.schemas import (
    AttemptOut,
    GenerationOut,
    GenerationRequest,
    ImageOut,
    ProviderRef,
)
from router_common.errors import NotFoundError, RequestTimeoutError


async def generate(
    request: Request, body: GenerationRequest, caller: Principal
) -> tuple[Generation, list[ProducedImage]]:
    """Run a synchronous generation inline; raise its error if it failed.

    Past the overall deadline the client gets 504 with the generation id, and the
    job goes on in this process, so its result can still be read later.
    """
    runner: GenerationRunner = request.app.state.runner
    candidates = await runner.select(body)
    generation = await runner.create_job(
        body, user_id=caller.user_id, api_key_id=caller.api_key_id, status="running"
    )
    task = asyncio.create_task(runner.run(generation, candidates))
    request.app.state.jobs.add(task)
    task.add_done_callback(request.app.state.jobs.discard)
    try:
        outcome = await asyncio.wait_for(
            asyncio.shield(task), runner.settings.generation_deadline_seconds
        )
    except TimeoutError:
        raise RequestTimeoutError(
            "The generation did not finish in time; poll it by its id",
            details={"generationId": str(generation.id)},
        ) from None

    if outcome.error is not None:
        raise outcome.error
    return outcome.generation, outcome.images


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
    produced: list[ProducedImage] | None = None,
) -> GenerationOut:
    """Build the generation object; images carry base64 only when just produced
    for a `b64_json` request, otherwise their stored URL."""
    inline = produced is not None and generation.response_format == "b64_json"
    data_by_name = {image.stored.file_name: image.data for image in produced or []}
    images = []
    for image in generation.images:
        if inline and image.file_name in data_by_name:
            encoded = base64.b64encode(data_by_name[image.file_name]).decode()
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
    )
