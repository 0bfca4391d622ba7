"""Who is calling: a user by JWT, or an API key verified by the keys service.

API-key verifications are cached per process and checked against the key's
version in Redis on every request (see `key_cache`), so a deleted,
deactivated or expired key is rejected on the very next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import grpc
import structlog
from fastapi import Depends, Request
from redis.exceptions import RedisError

from generation_service.key_cache import (
    KeyCacheSettings,
    KeyVerificationCache,
    VerifiedKey,
)
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
# Methods that only read; every other method needs `images:generate`.
READ_METHODS = frozenset({"GET", "HEAD"})


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
            raise PermissionDeniedError(
                f"This API key lacks the {scope} scope; create a key with it "
                "or update the key's scopes",
                details={"requiredScope": scope},
                code="missing_scope",
            )


async def authenticate(request: Request) -> Principal:
    """Authenticate the caller and check the scope that the method needs.

    A GET or HEAD needs `images:read`; any other method `images:generate`.
    Routes may require further scopes through `Principal.require`.
    """
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
    principal.require(SCOPE_READ if request.method in READ_METHODS else SCOPE_GENERATE)
    return principal


async def _verify_api_key(request: Request, key: str) -> Principal:
    try:
        verified = await _key_cache(request).verify(key)
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
    except RedisError:
        raise ServiceUnavailableError(
            "Key verification is unavailable (Redis); retry shortly",
            headers={"Retry-After": "5"},
        ) from None
    return _principal_from_key(verified)


def _principal_from_key(verified: VerifiedKey) -> Principal:
    return Principal(
        user_id=verified.user_id,
        role=verified.user_role,
        scopes=verified.scopes,
        api_key_id=verified.key_id,
        rate_limit=verified.rate_limit,
        daily_image_limit=verified.daily_image_limit,
    )


def _key_cache(request: Request) -> KeyVerificationCache:
    """Return this app's verification cache, created on first use."""
    state = request.app.state
    cache: KeyVerificationCache | None = getattr(state, "key_cache", None)
    if cache is None:
        settings = KeyCacheSettings()
        cache = KeyVerificationCache(
            state.redis,
            state.peers.verify_key,
            max_age_seconds=settings.seconds,
            max_entries=settings.size,
        )
        state.key_cache = cache
    return cache


CallerDep = Annotated[Principal, Depends(authenticate)]
