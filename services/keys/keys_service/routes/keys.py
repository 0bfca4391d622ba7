"""`/api/v1/keys`: the caller's API keys. Managing keys needs a user token.

Another user's key, and an id that is not a UUID, are 404 on every route, so
a caller cannot tell whether a key id exists.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Request, status
from pydantic.alias_generators import to_camel
from redis.exceptions import RedisError

from keys_service import repository
from keys_service.last_used import LastUsedRecorder
from keys_service.models import ApiKey
from keys_service.policy import check_limits, invalid_fields, limits_for_role
from keys_service.schemas import (
    NON_NULLABLE_UPDATE_FIELDS,
    CreatedKeyOut,
    CreateKeyRequest,
    DeletedKeyOut,
    KeyOut,
    UpdateKeyRequest,
)
from keys_service.secrets import VISIBLE_PREFIX_LENGTH, generate_key, hash_key
from keys_service.settings import Settings
from keys_service.versions import KeyVersions
from router_common.deps import SessionDep
from router_common.errors import ConflictError, NotFoundError, ServiceUnavailableError
from router_common.schemas import Envelope, Page
from router_common.user_auth import UserToken

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])
log = structlog.get_logger(__name__)

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=Envelope[CreatedKeyOut]
)
async def create_key(
    body: CreateKeyRequest, claims: UserToken, session: SessionDep, request: Request
) -> Envelope[CreatedKeyOut]:
    settings: Settings = request.app.state.settings
    limits = limits_for_role(settings, claims.role)
    check_limits(
        limits, rate_limit=body.rate_limit, daily_image_limit=body.daily_image_limit
    )
    _check_future(body.expires_at)

    user_id = uuid.UUID(claims.user_id)
    await repository.lock_user_keys(session, user_id)
    if await repository.count_for_user(session, user_id) >= settings.max_keys_per_user:
        raise ConflictError(
            f"This account already has the maximum of {settings.max_keys_per_user} "
            "API keys; delete one before creating another",
            details={"maxKeys": settings.max_keys_per_user},
        )

    key = generate_key()
    record = ApiKey(
        user_id=user_id,
        owner_role=claims.role,
        name=body.name,
        key_hash=hash_key(key, settings.api_key_pepper),
        prefix=key[:VISIBLE_PREFIX_LENGTH],
        last_four=key[-4:],
        scopes=[scope.value for scope in body.scopes],
        expires_at=body.expires_at,
        rate_limit=body.rate_limit or limits.rate_limit,
        daily_image_limit=body.daily_image_limit or limits.daily_image_limit,
    )
    session.add(record)
    await session.commit()
    await session.refresh(record)
    log.info("api_key_created", key_id=str(record.id))
    out = KeyOut.model_validate(record).model_dump()
    return Envelope(data=CreatedKeyOut.model_validate({**out, "key": key}))


@router.get("", response_model=Envelope[Page[KeyOut]])
async def list_keys(
    claims: UserToken,
    session: SessionDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Envelope[Page[KeyOut]]:
    try:
        records, next_cursor = await repository.list_page(
            session, uuid.UUID(claims.user_id), limit=limit, cursor=cursor
        )
    except repository.InvalidCursorError:
        raise invalid_fields(
            [{"field": "cursor", "message": "Not a cursor from a previous page"}]
        ) from None
    items = await _with_last_use(request, records)
    return Envelope(data=Page(items=items, next_cursor=next_cursor))


@router.get("/{key_id}", response_model=Envelope[KeyOut])
async def get_key(
    key_id: str, claims: UserToken, session: SessionDep, request: Request
) -> Envelope[KeyOut]:
    record = await repository.get_owned(
        session, uuid.UUID(claims.user_id), _parse_key_id(key_id)
    )
    if record is None:
        raise _key_not_found(key_id)
    [out] = await _with_last_use(request, [record])
    return Envelope(data=out)


@router.put("/{key_id}", response_model=Envelope[KeyOut])
async def update_key(
    key_id: str,
    body: UpdateKeyRequest,
    claims: UserToken,
    session: SessionDep,
    request: Request,
) -> Envelope[KeyOut]:
    parsed_id = _parse_key_id(key_id)
    changes = _changes(body)
    check_limits(
        limits_for_role(request.app.state.settings, claims.role),
        rate_limit=body.rate_limit,
        daily_image_limit=body.daily_image_limit,
    )
    _check_future(body.expires_at)

    record = await repository.update_owned(
        session, uuid.UUID(claims.user_id), parsed_id, changes
    )
    if record is None:
        raise _key_not_found(key_id)
    # Published before the commit, so that no cache can keep the old state
    # once the change is visible; if Redis fails, nothing changes.
    await _publish_version(request, record.id, record.version)
    await session.commit()
    log.info("api_key_updated", key_id=str(record.id), fields=sorted(changes))
    [out] = await _with_last_use(request, [record])
    return Envelope(data=out)


@router.delete("/{key_id}", response_model=Envelope[DeletedKeyOut])
async def delete_key(
    key_id: str, claims: UserToken, session: SessionDep, request: Request
) -> Envelope[DeletedKeyOut]:
    parsed_id = _parse_key_id(key_id)
    last_version = await repository.delete_owned(
        session, uuid.UUID(claims.user_id), parsed_id
    )
    if last_version is None:
        raise _key_not_found(key_id)
    settings: Settings = request.app.state.settings
    await _publish_version(
        request,
        parsed_id,
        last_version + 1,
        ttl_seconds=settings.deleted_key_version_ttl_seconds,
    )
    await session.commit()
    log.info("api_key_deleted", key_id=str(parsed_id))
    return Envelope(data=DeletedKeyOut(id=parsed_id))


def _parse_key_id(key_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(key_id)
    except ValueError:
        raise _key_not_found(key_id) from None


def _key_not_found(key_id: str) -> NotFoundError:
    # The id is echoed only when short, so that a long path never fills logs.
    echoed_id = key_id if len(key_id) <= 64 else f"{key_id[:64]}..."
    return NotFoundError(f"No API key with id {echoed_id!r}")


def _check_future(expires_at: datetime | None) -> None:
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise invalid_fields(
            [{"field": "expiresAt", "message": "Must be in the future"}]
        )


def _changes(body: UpdateKeyRequest) -> dict[str, object]:
    """Collect the columns a PUT body sets; raise a 400 for nulls or no fields."""
    sent = body.model_fields_set
    nulls = [
        name
        for name in NON_NULLABLE_UPDATE_FIELDS
        if name in sent and getattr(body, name) is None
    ]
    if nulls:
        raise invalid_fields(
            [{"field": to_camel(name), "message": "Must not be null"} for name in nulls]
        )
    if not sent:
        raise invalid_fields(
            [{"field": "body", "message": "Send at least one field to change"}]
        )

    changes: dict[str, object] = {name: getattr(body, name) for name in sent}
    if body.scopes is not None:
        changes["scopes"] = [scope.value for scope in body.scopes]
    return changes


async def _publish_version(
    request: Request, key_id: uuid.UUID, version: int, *, ttl_seconds: int = 0
) -> None:
    versions: KeyVersions = request.app.state.key_versions
    try:
        await versions.publish(key_id, version, ttl_seconds=ttl_seconds)
    except RedisError as error:
        log.error("key_version_publish_failed", key_id=str(key_id), error=str(error))
        raise _store_unavailable() from error


async def _with_last_use(request: Request, records: list[ApiKey]) -> list[KeyOut]:
    """Convert records, merging last-use times not yet written to the database."""
    recorder: LastUsedRecorder = request.app.state.last_used
    try:
        pending = await recorder.pending([record.id for record in records])
    except RedisError as error:
        raise _store_unavailable() from error

    items = []
    for record in records:
        out = KeyOut.model_validate(record)
        used = pending.get(record.id)
        if used is not None and (out.last_used_at is None or used > out.last_used_at):
            out = out.model_copy(update={"last_used_at": used})
        items.append(out)
    return items


def _store_unavailable() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "Key store is unavailable; retry shortly", headers={"Retry-After": "5"}
    )
