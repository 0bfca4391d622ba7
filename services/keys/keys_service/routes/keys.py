"""`/api/v1/keys`: the caller's API keys. Managing keys needs a user token."""

from __future__ import annotations

import uuid

import structlog
from fastapi import APIRouter, Request, status

from keys_service import repository
from keys_service.models import ApiKey
from keys_service.schemas import CreatedKeyOut, CreateKeyRequest, KeyOut
from keys_service.secrets import VISIBLE_PREFIX_LENGTH, generate_key, hash_key
from router_common.deps import SessionDep
from router_common.schemas import Envelope, Page
from router_common.user_auth import UserToken

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])
log = structlog.get_logger(__name__)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=Envelope[CreatedKeyOut]
)
async def create_key(
    body: CreateKeyRequest, claims: UserToken, session: SessionDep, request: Request
) -> Envelope[CreatedKeyOut]:
    key = generate_key()
    record = ApiKey(
        user_id=uuid.UUID(claims.user_id),
        owner_role=claims.role,
        name=body.name,
        key_hash=hash_key(key, request.app.state.settings.api_key_pepper),
        prefix=key[:VISIBLE_PREFIX_LENGTH],
        last_four=key[-4:],
        scopes=[scope.value for scope in body.scopes],
    )
    session.add(record)
    await session.commit()
    await session.refresh(record)
    log.info("api_key_created", key_id=str(record.id))
    return Envelope(data=CreatedKeyOut.model_validate({**_fields(record), "key": key}))


@router.get("", response_model=Envelope[Page[KeyOut]])
async def list_keys(claims: UserToken, session: SessionDep) -> Envelope[Page[KeyOut]]:
    records = await repository.list_for_user(session, uuid.UUID(claims.user_id))
    items = [KeyOut.model_validate(record) for record in records]
    return Envelope(data=Page(items=items, next_cursor=None))


def _fields(record: ApiKey) -> dict[str, object]:
    return KeyOut.model_validate(record).model_dump()
