"""`/api/v1/images`: generations in the router's own envelope."""

from __future__ import annotations

from fastapi import APIRouter, Request

from generation_service import service
from generation_service.auth import SCOPE_GENERATE, SCOPE_READ, CallerDep
from generation_service.schemas import GenerationOut, GenerationRequest
from router_common.schemas import Envelope

router = APIRouter(prefix="/api/v1/images", tags=["images"])


@router.post("/generations", response_model=Envelope[GenerationOut])
async def create_generation(
    body: GenerationRequest, caller: CallerDep, request: Request
) -> Envelope[GenerationOut]:
    caller.require(SCOPE_GENERATE)
    generation, images = await service.generate(request, body, caller)
    store = request.app.state.store
    return Envelope(data=service.to_out(generation, store.url_for, images))


@router.get("/generations/{generation_id}", response_model=Envelope[GenerationOut])
async def get_generation(
    generation_id: str, caller: CallerDep, request: Request
) -> Envelope[GenerationOut]:
    caller.require(SCOPE_READ)
    generation = await service.get_owned(request, generation_id, caller)
    return Envelope(data=service.to_out(generation, request.app.state.store.url_for))
