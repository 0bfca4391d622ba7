"""JWT issue and verification, shared so that every service checks tokens alike.

Tokens are HS256 with a fixed algorithm list, so `alg: none` or an algorithm
swap is rejected. Each token carries `ver`, the user's token version; logout and
password change bump the version in Redis, which revokes every earlier token at
once in every service (JWT times have one-second resolution, so issue times
cannot tell tokens of the same second apart).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt
from redis.asyncio import Redis
from redis.exceptions import RedisError

from router_common.errors import AuthenticationError, ServiceUnavailableError

ALLOWED_ALGORITHMS = ["HS256"]
REQUIRED_CLAIMS = ["sub", "role", "iat", "exp", "jti", "ver"]


def token_version_key(user_id: str) -> str:
    return f"auth:token-version:{user_id}"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: str
    role: str
    version: int
    token_id: str
    expires_at: int


def issue_token(
    *, secret: str, user_id: str, role: str, version: int, ttl_seconds: int
) -> tuple[str, int]:
    """Return a signed token and its lifetime in seconds."""
    now = int(time.time())
    claims = {
        "sub": user_id,
        "role": role,
        "ver": version,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": secrets.token_hex(16),
    }
    return jwt.encode(claims, secret, algorithm="HS256"), ttl_seconds


def decode_token(token: str, secret: str) -> TokenClaims:
    """Check the signature, algorithm and required claims; raise 401 otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=ALLOWED_ALGORITHMS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as error:
        raise AuthenticationError("Token has expired; log in again") from error
    except jwt.PyJWTError as error:
        raise AuthenticationError("Invalid token") from error

    subject, role, version = claims["sub"], claims["role"], claims["ver"]
    if not isinstance(subject, str) or not isinstance(role, str):
        raise AuthenticationError("Invalid token")
    if not isinstance(version, int) or isinstance(version, bool):
        raise AuthenticationError("Invalid token")
    return TokenClaims(
        user_id=subject,
        role=role,
        version=version,
        token_id=str(claims["jti"]),
        expires_at=int(claims["exp"]),
    )


async def current_token_version(redis: Redis, user_id: str) -> int:
    try:
        value = await redis.get(token_version_key(user_id))
    except RedisError as error:
        raise ServiceUnavailableError(
            "Token store is unavailable; retry shortly", headers={"Retry-After": "5"}
        ) from error
    return int(value) if value is not None else 0


async def verify_token(token: str, secret: str, redis: Redis) -> TokenClaims:
    """Decode `token` and reject it when its version has been revoked."""
    claims = decode_token(token, secret)
    if claims.version != await current_token_version(redis, claims.user_id):
        raise AuthenticationError("Token has been revoked; log in again")
    return claims


def looks_like_jwt(credential: str) -> bool:
    """Tell a JWT (three dot-separated parts) from an API key."""
    return credential.count(".") == 2


def bearer_credential(authorization: str | None) -> str | None:
    """Return the credential of an `Authorization: Bearer ...` header, if any."""
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthenticationError("Authorization header must be 'Bearer <token>'")
    return credential.strip()
