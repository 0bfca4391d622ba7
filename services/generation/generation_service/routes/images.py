"""`/api/v1/images`: generations in the router's own envelope."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from generation_service import history, service
from generation_service.auth import SCOPE_GENERATE, SCOPE_READ, CallerDep
from generation_service.schemas import GenerationOut, GenerationRequest, UsageOut
from router_common.schemas import Envelope, Page

router = APIRouter(prefix="/api/v1/images", tags=["images"])

GENERATION_PATH = "/api/v1/images/generations/{id}"


@router.post(
    "/generations",
    response_model=Envelope[GenerationOut],
    responses={202: {"model": Envelope[GenerationOut], "description": "Queued"}},
)
async def create_generation(
    body: GenerationRequest, caller: CallerDep, request: Request
) -> JSONResponse:
    """Generate images. Waits for the result unless `async` is true or the
    request carries `Prefer: respond-async`; then it returns 202 at once."""
    caller.require(SCOPE_GENERATE)
    run_async = service.wants_async(request, body.run_async)
    result = await service.generate(request, body, caller, run_async=run_async)
    store = request.app.state.store
    out = service.to_out(result.generation, store.url_for, result.inline)
    payload = Envelope(data=out).model_dump(mode="json", by_alias=True)
    if result.accepted:
        location = GENERATION_PATH.format(id=result.generation.id)
        headers = {**result.headers, "Location": location}
        return JSONResponse(payload, status_code=202, headers=headers)
    return JSONResponse(payload, headers=result.headers)


@router.get("/generations", response_model=Envelope[Page[GenerationOut]])
async def list_generations(
    caller: CallerDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status: Literal["queued", "running", "succeeded", "failed"] | None = None,
    provider: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> Envelope[Page[GenerationOut]]:
    """List the caller's generations, newest first."""
    caller.require(SCOPE_READ)
    rows, next_cursor = await history.list_generations(
        request.app.state.session_factory,
        user_id=caller.user_id,
        limit=limit,
        cursor=cursor,
        status=status,
        provider=provider,
    )
    url_for = request.app.state.store.url_for
    items = [service.to_out(row, url_for) for row in rows]
    return Envelope(data=Page(items=items, next_cursor=next_cursor))


@router.get("/generations/{generation_id}", response_model=Envelope[GenerationOut])
async def get_generation(
    generation_id: str, caller: CallerDep, request: Request
) -> Envelope[GenerationOut]:
    caller.require(SCOPE_READ)
    generation = await service.get_owned(request, generation_id, caller)
    return Envelope(data=service.to_out(generation, request.app.state.store.url_for))


@router.get("/usage", response_model=Envelope[UsageOut])
async def get_usage(
    caller: CallerDep,
    request: Request,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> Envelope[UsageOut]:
    """Return the caller's images and spend over the last `days` days (UTC), per day and
    per provider; only succeeded generations count."""
    caller.require(SCOPE_READ)
    usage = await history.usage(
        request.app.state.session_factory, user_id=caller.user_id, days=days
    )
    return Envelope(data=usage)
