"""Who is calling: a user by JWT, or an API key verified by the keys service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import grpc
import structlog
from fastapi import Depends, Request

from router_common.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from router_common.tokens import bearer_credential, looks_like_jwt, verify_token

SCOPE_GENERATE = "images:generate"
SCOPE_READ = "images:read"
ALL_SCOPES = frozenset({SCOPE_GENERATE, SCOPE_READ})
MAX_CREDENTIAL_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: str
    scopes: frozenset[str]
    # Set when the caller authenticated with an API key.
    api_key_id: str | None = None
    rate_limit: int = 0
    daily_image_limit: int = 0

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDeniedError(f"This API key lacks the {scope} scope")


async def authenticate(request: Request) -> Principal:
    api_key = request.headers.get("x-api-key")
    credential = api_key or bearer_credential(request.headers.get("authorization"))
    if not credential:
        raise AuthenticationError(
            "Missing credentials: send 'Authorization: Bearer <token or API key>' "
            "or X-API-Key"
        )
    if len(credential) > MAX_CREDENTIAL_LENGTH:
        raise AuthenticationError("Invalid credentials")

    state = request.app.state
    if not api_key and looks_like_jwt(credential):
        claims = await verify_token(credential, state.settings.jwt_secret, state.redis)
        principal = Principal(
            user_id=claims.user_id, role=claims.role, scopes=ALL_SCOPES
        )
    else:
        principal = await _verify_api_key(request, credential)
    structlog.contextvars.bind_contextvars(
        user_id=principal.user_id, key_id=principal.api_key_id
    )
    return principal


async def _verify_api_key(request: Request, key: str) -> Principal:
    try:
        verified = await request.app.state.peers.verify_key(key)
    except grpc.aio.AioRpcError as error:
        if error.code() in (
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.PERMISSION_DENIED,
        ):
            raise AuthenticationError("Invalid, inactive or expired API key") from None
        raise ServiceUnavailableError(
            "Key verification is unavailable; retry shortly",
            headers={"Retry-After": "5"},
        ) from None
    return Principal(
        user_id=verified.user_id,
        role=verified.user_role,
        scopes=frozenset(verified.scopes),
        api_key_id=verified.key_id,
        rate_limit=verified.rate_limit,
        daily_image_limit=verified.daily_image_limit,
    )


CallerDep = Annotated[Principal, Depends(authenticate)]
