"""`/api/v1/providers`: provider management, for admins only.

Every route authenticates the admin before it reads the body, so a caller who
is not an admin learns nothing from a malformed body. The provider's API key is
stored encrypted and never returned: responses carry `apiKeyHint` only.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

import pydantic
import structlog
from fastapi import APIRouter, Query, Request, status
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from providers_service.health import HealthStore, ProviderState
from providers_service.models import Provider
from providers_service.row_cache import mark_rows_changed
from providers_service.schemas import (
    LastError,
    ProviderCreate,
    ProviderDetail,
    ProviderHealth,
    ProviderOut,
    ProviderUpdate,
    StatusUpdate,
    get_url_allowlist,
)
from providers_service.secrets import SecretBox, mask_secret
from router_common.deps import SessionDep
from router_common.errors import (
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationError,
)
from router_common.schemas import Envelope, Page, RequestModel
from router_common.url_guard import (
    UnresolvableHostError,
    UnsafeUrlError,
    check_resolved_host,
    default_port,
)
from router_common.user_auth import AdminToken

router = APIRouter(prefix="/api/v1/providers", tags=["providers"])
log = structlog.get_logger(__name__)
BodyT = TypeVar("BodyT", bound=RequestModel)
# Column names of the provider row, by the field names of the request body.
COLUMNS = {"api_key": "api_key_encrypted", "timeout": "timeout_ms"}


# -- routes ------------------------------------------------------------------


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=Envelope[ProviderOut]
)
async def create_provider(
    _admin: AdminToken, session: SessionDep, request: Request
) -> Envelope[ProviderOut]:
    body = await parse_body(request, ProviderCreate)
    await check_base_url_resolution(body.base_url)
    settings = request.app.state.settings
    count = await session.scalar(select(func.count()).select_from(Provider))
    if (count or 0) >= settings.max_providers:
        raise ConflictError(
            f"At most {settings.max_providers} providers may be configured; "
            "delete one first or raise MAX_PROVIDERS"
        )

    provider = Provider(
        id=uuid.uuid4(),
        name=body.name,
        type=body.type.value,
        api_key_encrypted=_secret_box(request).encrypt(body.api_key),
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
    await _commit_unique_name(session, body.name)
    await _announce_change(request, provider)
    await session.refresh(provider)
    log.info("provider_created", provider_id=str(provider.id), provider=provider.name)
    return Envelope(data=ProviderOut.model_validate(provider))


@router.get("", response_model=Envelope[Page[ProviderOut]])
async def list_providers(
    _admin: AdminToken,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Envelope[Page[ProviderOut]]:
    query = select(Provider).order_by(Provider.priority, Provider.name)
    if cursor is not None:
        after_priority, after_name = _decode_cursor(cursor)
        query = query.where(
            tuple_(Provider.priority, Provider.name) > (after_priority, after_name)
        )
    rows = list(await session.scalars(query.limit(limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    next_cursor = _encode_cursor(page[-1]) if more else None
    items = [ProviderOut.model_validate(provider) for provider in page]
    return Envelope(data=Page(items=items, next_cursor=next_cursor))


@router.get("/{provider_id}", response_model=Envelope[ProviderDetail])
async def get_provider(
    provider_id: str, _admin: AdminToken, session: SessionDep, request: Request
) -> Envelope[ProviderDetail]:
    provider = await _load(session, provider_id)
    health = await _read_health(request, provider)
    detail = ProviderDetail.model_validate(
        {**ProviderOut.model_validate(provider).model_dump(), "health": health}
    )
    return Envelope(data=detail)


@router.put("/{provider_id}", response_model=Envelope[ProviderOut])
async def update_provider(
    provider_id: str, _admin: AdminToken, session: SessionDep, request: Request
) -> Envelope[ProviderOut]:
    provider = await _load(session, provider_id)
    body = await parse_body(request, ProviderUpdate)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if not changes:
        raise ValidationError(
            "Name at least one field to update",
            details={"fields": [{"field": "body", "message": "No field to update"}]},
        )
    if "base_url" in changes:
        await check_base_url_resolution(changes["base_url"])

    for name, value in changes.items():
        if name == "api_key":
            provider.api_key_encrypted = _secret_box(request).encrypt(value)
            provider.api_key_hint = mask_secret(value)
            continue
        if name in ("type", "status"):
            value = value.value
        setattr(provider, COLUMNS.get(name, name), value)
    await _commit_unique_name(session, provider.name)
    await _announce_change(request, provider)
    await session.refresh(provider)
    log.info(
        "provider_updated",
        provider_id=str(provider.id),
        fields=sorted(_camel(name) for name in changes),
    )
    return Envelope(data=ProviderOut.model_validate(provider))


@router.put("/{provider_id}/status", response_model=Envelope[ProviderOut])
async def set_provider_status(
    provider_id: str, _admin: AdminToken, session: SessionDep, request: Request
) -> Envelope[ProviderOut]:
    provider = await _load(session, provider_id)
    body = await parse_body(request, StatusUpdate)
    provider.status = body.status.value
    await session.commit()
    await _announce_change(request, provider)
    await session.refresh(provider)
    log.info(
        "provider_status_changed", provider_id=str(provider.id), status=provider.status
    )
    return Envelope(data=ProviderOut.model_validate(provider))


@router.delete("/{provider_id}", response_model=Envelope[dict[str, str]])
async def delete_provider(
    provider_id: str, _admin: AdminToken, session: SessionDep, request: Request
) -> Envelope[dict[str, str]]:
    # Past generations keep the provider's id and name in their own rows, so
    # deleting the provider leaves their history readable.
    provider = await _load(session, provider_id)
    await session.delete(provider)
    await session.commit()
    await _announce_change(request, provider)
    try:
        await _health_store(request).forget(str(provider.id))
    except RedisError as error:
        # The statistics expire on their own (STATS_TTL_SECONDS).
        log.warning(
            "provider_stats_not_deleted",
            provider_id=str(provider.id),
            error=type(error).__name__,
        )
    log.info("provider_deleted", provider_id=str(provider.id), provider=provider.name)
    return Envelope(data={"id": str(provider.id)})


# -- request bodies --------------------------------------------------------------


async def parse_body(request: Request, model: type[BodyT]) -> BodyT:
    """Validate the JSON body against `model`; 400 names each invalid field."""
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"null")
    except pydantic.ValidationError as error:
        errors = [
            {**item, "loc": ("body", *item["loc"])}
            for item in error.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError(errors) from None


async def check_base_url_resolution(base_url: str) -> None:
    """Reject a base URL whose host name resolves to an internal address now.

    A name that cannot be resolved (no DNS offline) is accepted: the generation
    service checks it again after resolution before every call.
    """
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or default_port(parts.scheme)
    try:
        await check_resolved_host(host, port, get_url_allowlist())
    except UnresolvableHostError:
        log.info("provider_host_unresolved", host=host)
    except UnsafeUrlError as error:
        raise ValidationError(
            f"Invalid request: baseUrl {error}",
            details={"fields": [{"field": "baseUrl", "message": f"baseUrl {error}"}]},
        ) from None


# -- helpers -------------------------------------------------------------------


async def _load(session: AsyncSession, provider_id: str) -> Provider:
    try:
        parsed = uuid.UUID(provider_id)
    except ValueError:
        raise NotFoundError(f"No provider with id {provider_id[:64]!r}") from None
    provider = await session.get(Provider, parsed)
    if provider is None:
        raise NotFoundError(f"No provider with id {parsed}")
    return provider


async def _commit_unique_name(session: AsyncSession, name: str) -> None:
    try:
        await session.commit()
    except IntegrityError as error:
        await session.rollback()
        raise ConflictError(
            f"A provider named {name!r} already exists; choose another name",
            details={"fields": [{"field": "name", "message": "Already in use"}]},
        ) from error


async def _announce_change(request: Request, provider: Provider) -> None:
    """Tell every registry process to reload its rows after a committed write."""
    try:
        await mark_rows_changed(request.app.state.redis)
    except RedisError as error:
        # The change is committed, but registries keep routing on their old copy
        # until the next write that reaches Redis.
        log.error(
            "provider_change_not_announced",
            provider_id=str(provider.id),
            error=type(error).__name__,
        )
        raise ServiceUnavailableError(
            "The change was saved, but the provider registries were not notified "
            "because Redis cannot be reached. Once Redis is back, update any "
            "provider so that they reload",
            headers={"Retry-After": "5"},
        ) from error


async def _read_health(request: Request, provider: Provider) -> ProviderHealth:
    store = _health_store(request)
    try:
        state = (await store.read_states([str(provider.id)]))[str(provider.id)]
        last_error = await store.last_error(str(provider.id))
    except RedisError as error:
        raise ServiceUnavailableError(
            "Provider health is unavailable because Redis cannot be reached; "
            "retry shortly",
            headers={"Retry-After": "5"},
        ) from error
    return _health(state, last_error, _stored_secret(request, provider))


def _health(
    state: ProviderState, last_error: dict[str, str] | None, secret: str | None
) -> ProviderHealth:
    judged = [a for a in state.recent if a.outcome in ("success", "error", "timeout")]
    successes = sorted(state.success_latencies)
    error_out = None
    if last_error is not None:
        message = last_error["message"]
        if secret:
            # A provider may echo the key it was sent in its error body.
            message = message.replace(secret, "[redacted]")
        error_out = LastError(
            type=last_error["type"],
            message=message,
            at=_from_ms(int(last_error["at_ms"])),
        )
    return ProviderHealth(
        circuit_state=state.circuit,
        consecutive_failures=state.consecutive_failures,
        recent_attempts=len(state.recent),
        success_rate=(
            round(sum(a.outcome == "success" for a in judged) / len(judged), 4)
            if judged
            else None
        ),
        p50_latency_ms=_percentile(successes, 0.50),
        p95_latency_ms=_percentile(successes, 0.95),
        calls_last_minute=state.calls_last_minute,
        paused_until=(
            _from_ms(state.paused_until_ms) if state.paused_until_ms else None
        ),
        last_error=error_out,
    )


def _percentile(ordered: list[int], fraction: float) -> int | None:
    """Nearest-rank percentile of an ascending list; None when it is empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _stored_secret(request: Request, provider: Provider) -> str | None:
    try:
        return _secret_box(request).decrypt(provider.api_key_encrypted)
    except ValueError:
        return None


def _encode_cursor(provider: Provider) -> str:
    raw = json.dumps([provider.priority, provider.name]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        priority, name = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(priority, int) or not isinstance(name, str):
            raise ValueError("unexpected cursor content")
    except (ValueError, TypeError, binascii.Error):
        raise ValidationError(
            "Invalid request: cursor is not one this API returned",
            details={"fields": [{"field": "cursor", "message": "Invalid cursor"}]},
        ) from None
    return priority, name


def _from_ms(milliseconds: int) -> datetime:
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _secret_box(request: Request) -> SecretBox:
    return request.app.state.secret_box


def _health_store(request: Request) -> HealthStore:
    return request.app.state.health
