"""The FastAPI dependency that authenticates a user token (never an API key)."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, Request

from router_common.errors import AuthenticationError, PermissionDeniedError
from router_common.tokens import (
    TokenClaims,
    bearer_credential,
    looks_like_jwt,
    verify_token,
)

ADMIN_ROLE = "admin"


async def require_user_token(request: Request) -> TokenClaims:
    """Authenticate the caller by JWT; API keys are rejected with 401.

    Expects `app.state.settings` (with `jwt_secret`) and `app.state.redis`.
    """
    if request.headers.get("x-api-key"):
        raise AuthenticationError(
            "This route needs a user token; API keys are not accepted"
        )
    credential = bearer_credential(request.headers.get("authorization"))
    if credential is None:
        raise AuthenticationError(
            "Missing credentials: send 'Authorization: Bearer <token>'"
        )
    if not looks_like_jwt(credential):
        raise AuthenticationError(
            "This route needs a user token; API keys are not accepted"
        )

    state = request.app.state
    claims = await verify_token(credential, state.settings.jwt_secret, state.redis)
    structlog.contextvars.bind_contextvars(user_id=claims.user_id)
    return claims


def _presents_api_key(request: Request) -> bool:
    if request.headers.get("x-api-key"):
        return True
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    return (
        scheme.lower() == "bearer"
        and bool(credential)
        and not looks_like_jwt(credential)
    )


async def require_admin_token(request: Request) -> TokenClaims:
    """Authenticate an admin by JWT. An API key, even an admin's, is 403: admin
    routes are never open to keys, whoever owns them."""
    if _presents_api_key(request):
        raise PermissionDeniedError(
            "This route is for admins with a user token; API keys are not accepted"
        )
    claims = await require_user_token(request)
    if claims.role != ADMIN_ROLE:
        raise PermissionDeniedError("This route is for admins only")
    return claims


UserToken = Annotated[TokenClaims, Depends(require_user_token)]
AdminToken = Annotated[TokenClaims, Depends(require_admin_token)]
