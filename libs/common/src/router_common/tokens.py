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


# Raise the stored version to at least ARGV[1] and return the stored version.
_RAISE_VERSION_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > current then
    redis.call('SET', KEYS[1], floor)
    return floor
end
return current
"""

# Set the version to one above the larger of the stored version and ARGV[1].
_BUMP_VERSION_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local next_version = math.max(current, tonumber(ARGV[1])) + 1
redis.call('SET', KEYS[1], next_version)
return next_version
"""


async def raise_token_version(redis: Redis, user_id: str, at_least: int) -> int:
    """Raise the user's stored token version to at least `at_least`.

    Returns the version now stored, which new tokens must carry. The issuer
    calls this with the version it keeps in its database, so a Redis that lost
    its data cannot bring revoked tokens back.
    """
    return await _run_version_script(redis, _RAISE_VERSION_SCRIPT, user_id, at_least)


async def bump_token_version(redis: Redis, user_id: str, at_least: int = 0) -> int:
    """Revoke every token of the user issued so far and return the new version.

    The new version is one above both the stored version and `at_least`.
    """
    return await _run_version_script(redis, _BUMP_VERSION_SCRIPT, user_id, at_least)


async def _run_version_script(
    redis: Redis, script: str, user_id: str, argument: int
) -> int:
    try:
        result = await redis.eval(script, 1, token_version_key(user_id), argument)
    except RedisError as error:
        raise ServiceUnavailableError(
            "Token store is unavailable; retry shortly", headers={"Retry-After": "5"}
        ) from error
    return int(result)


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
