"""Model catalogue routes: `GET /api/v1/images/models` and OpenAI's `GET /v1/models`.

Both come from the provider registry's catalogue: the models and sizes that
active providers can serve now, without provider names or secrets. Any
authenticated caller may read them, whatever its API key's scopes.
"""

from __future__ import annotations

import grpc
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from generation_service.auth import CallerDep
from imagerouter.v1 import providers_pb2
from router_common.errors import ServiceUnavailableError
from router_common.schemas import Envelope, ResponseModel

router = APIRouter(tags=["models"])
log = structlog.get_logger(__name__)
# OpenAI's model objects name an owner; every model here is served through us.
MODEL_OWNER = "image-router"


class ModelOut(ResponseModel):
    id: str
    sizes: list[str]


class CatalogueOut(ResponseModel):
    # Models that at least one available provider names, with their sizes.
    models: list[ModelOut]
    # Every size available now; providers that list no models accept any model.
    sizes: list[str]


@router.get("/api/v1/images/models", response_model=Envelope[CatalogueOut])
async def list_models(caller: CallerDep, request: Request) -> Envelope[CatalogueOut]:
    listing = await _catalogue(request)
    models = [
        ModelOut(id=model.id, sizes=list(model.sizes)) for model in listing.models
    ]
    return Envelope(data=CatalogueOut(models=models, sizes=list(listing.sizes)))


@router.get("/v1/models")
async def list_openai_models(caller: CallerDep, request: Request) -> JSONResponse:
    listing = await _catalogue(request)
    data = [
        {
            "id": model.id,
            "object": "model",
            "created": model.created,
            "owned_by": MODEL_OWNER,
        }
        for model in listing.models
    ]
    return JSONResponse({"object": "list", "data": data})


async def _catalogue(request: Request) -> providers_pb2.ListCatalogueResponse:
    try:
        return await request.app.state.peers.list_catalogue()
    except grpc.aio.AioRpcError as error:
        log.warning("catalogue_unavailable", code=error.code().name)
        raise ServiceUnavailableError(
            "The provider registry is unavailable; retry shortly",
            headers={"Retry-After": "5"},
        ) from None
