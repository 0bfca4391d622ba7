"""Steps the account routes share: password checks under the attempt limits,
token issue, and loading the caller's account."""

from __future__ import annotations

import uuid

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service import repository, throttle
from auth_service.models import User
from auth_service.passwords import Passwords
from auth_service.schemas import LoginOut, UserOut
from auth_service.settings import Settings
from router_common.errors import AuthenticationError
from router_common.tokens import TokenClaims, issue_token, raise_token_version

log = structlog.get_logger(__name__)


def login_limits(settings: Settings, email: str, address: str) -> list[throttle.Limit]:
    """Build the failed-login limits of one account and one client address."""
    return [
        throttle.Limit(
            throttle.account_key(email),
            settings.login_account_failure_limit,
            settings.login_account_window_seconds,
        ),
        throttle.Limit(
            throttle.login_address_key(address),
            settings.login_address_failure_limit,
            settings.login_address_window_seconds,
        ),
    ]


async def check_password(
    *,
    redis: Redis,
    settings: Settings,
    passwords: Passwords,
    email: str,
    user: User | None,
    password: str,
    address: str,
) -> bool:
    """Check a password under the failed-login limits of the account and address.

    Raises 429 before any hashing when a limit is full. A correct password
    resets the account's counter and gives back the address's attempt, and a
    wrong one stays counted.
    """
    await throttle.reserve(
        redis, login_limits(settings, email, address), action="login"
    )
    stored_hash = user.password_hash if user is not None else None
    if not await passwords.verify(stored_hash, password):
        log.info(
            "password_check_failed",
            user_id=str(user.id) if user else None,
            client_address=address,
        )
        return False
    await throttle.reset(redis, throttle.account_key(email))
    await throttle.release(redis, throttle.login_address_key(address))
    return True


async def require_current_password(
    *,
    redis: Redis,
    settings: Settings,
    passwords: Passwords,
    user: User,
    password: str,
    address: str,
) -> None:
    """Raise 401 unless `password` is the user's current password."""
    matched = await check_password(
        redis=redis,
        settings=settings,
        passwords=passwords,
        email=user.email,
        user=user,
        password=password,
        address=address,
    )
    if not matched:
        raise AuthenticationError("The current password is incorrect")


async def load_user(session: AsyncSession, claims: TokenClaims) -> User:
    """Return the account of a verified token, or raise 401 if it no longer exists."""
    try:
        user_id = uuid.UUID(claims.user_id)
    except ValueError:
        raise AuthenticationError("Invalid token") from None
    user = await repository.get_by_id(session, user_id)
    if user is None:
        raise AuthenticationError("The account of this token no longer exists")
    return user


async def issue_login(redis: Redis, settings: Settings, user: User) -> LoginOut:
    """Issue a token carrying the user's current token version."""
    version = await raise_token_version(redis, str(user.id), user.token_version)
    token, expires_in = issue_token(
        secret=settings.jwt_secret,
        user_id=str(user.id),
        role=user.role,
        version=version,
        ttl_seconds=settings.jwt_ttl_seconds,
    )
    return LoginOut(
        token=token, expires_in=expires_in, user=UserOut.model_validate(user)
    )
