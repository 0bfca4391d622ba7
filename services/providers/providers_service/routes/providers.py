"""`/api/v1/providers`: provider management, for admins only."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request, status
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from providers_service.models import Provider
from providers_service.schemas import ProviderCreate, ProviderOut
from providers_service.secrets import mask_secret
from router_common.deps import SessionDep
from router_common.errors import ConflictError
from router_common.schemas import Envelope, Page
from router_common.user_auth import AdminToken

router = APIRouter(prefix="/api/v1/providers", tags=["providers"])
log = structlog.get_logger(__name__)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=Envelope[ProviderOut]
)
async def create_provider(
    body: ProviderCreate, _admin: AdminToken, session: SessionDep, request: Request
) -> Envelope[ProviderOut]:
    settings = request.app.state.settings
    count = await session.scalar(select(func.count()).select_from(Provider))
    if (count or 0) >= settings.max_providers:
        raise ConflictError(
            f"At most {settings.max_providers} providers may be configured"
        )

    provider = Provider(
        name=body.name,
        type=body.type.value,
        api_key_encrypted=request.app.state.secret_box.encrypt(body.api_key),
        api_key_hint=mask_secret(body.api_key),
        base_url=body.base_url,
        priority=body.priority,
        weight=body.weight,
        rate_limit=body.rate_limit,
        cost_per_image=body.cost_per_image,
        supported_sizes=body.supported_sizes,
        models=body.models,
        max_images_per_request=body.max_images_per_request,
        timeout_ms=body.timeout,
        status=body.status.value,
    )
    session.add(provider)
    try:
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        raise ConflictError(f"A provider named {body.name!r} already exists") from error
    await session.refresh(provider)
    log.info("provider_created", provider_id=str(provider.id), provider=provider.name)
    return Envelope(data=ProviderOut.model_validate(provider))


@router.get("", response_model=Envelope[Page[ProviderOut]])
async def list_providers(
    _admin: AdminToken, session: SessionDep
) -> Envelope[Page[ProviderOut]]:
    providers = await session.scalars(
        select(Provider).order_by(Provider.priority, Provider.name)
    )
    items = [ProviderOut.model_validate(provider) for provider in providers]
    return Envelope(data=Page(items=items, next_cursor=None))
