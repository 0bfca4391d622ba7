"""`/api/v1/users`: registration, login and logout."""

from __future__ import annotations

import uuid

import structlog
from fastapi import APIRouter, status

from auth_service import accounts, repository, throttle
from auth_service.deps import (
    ClientAddressDep,
    PasswordsDep,
    RedisDep,
    SessionDep,
    SettingsDep,
)
from auth_service.routes.responses import REQUIRES_USER_TOKEN, error_responses
from auth_service.schemas import (
    LoginOut,
    LoginRequest,
    LogoutOut,
    RegisterRequest,
    UserOut,
    normalise_email,
)
from router_common.errors import AuthenticationError
from router_common.schemas import Envelope
from router_common.tokens import bump_token_version
from router_common.user_auth import UserToken

router = APIRouter(prefix="/api/v1/users", tags=["users"])
log = structlog.get_logger(__name__)

INVALID_LOGIN_MESSAGE = "Invalid email or password"


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=Envelope[UserOut],
    responses=error_responses(400, 409, 429),
    summary="Register a new user account",
)
async def register(
    body: RegisterRequest,
    session: SessionDep,
    settings: SettingsDep,
    redis: RedisDep,
    passwords: PasswordsDep,
    address: ClientAddressDep,
) -> Envelope[UserOut]:
    """Create a plain user. The role is always `user`."""
    await throttle.reserve(
        redis,
        [
            throttle.Limit(
                throttle.registration_address_key(address),
                settings.registration_address_limit,
                settings.registration_window_seconds,
            )
        ],
        action="registration",
    )
    password_hash = await passwords.hash(body.password)
    user = await repository.create_user(
        session,
        email=body.email,
        password_hash=password_hash,
        name=body.name,
        role="user",
    )
    log.info("user_registered", user_id=str(user.id), client_address=address)
    return Envelope(data=UserOut.model_validate(user))


@router.post(
    "/login",
    response_model=Envelope[LoginOut],
    responses=error_responses(400, 401, 429),
    summary="Log in and receive a JWT",
)
async def login(
    body: LoginRequest,
    session: SessionDep,
    settings: SettingsDep,
    redis: RedisDep,
    passwords: PasswordsDep,
    address: ClientAddressDep,
) -> Envelope[LoginOut]:
    """Check the email and password and return a token with the user.

    A wrong password and an unknown email get the same 401 and cost one argon2
    verification each.
    """
    email = _login_email(body.email)
    user = await repository.get_by_email(session, email)
    matched = await accounts.check_password(
        redis=redis,
        settings=settings,
        passwords=passwords,
        email=email,
        user=user,
        password=body.password,
        address=address,
    )
    if not matched or user is None:
        raise AuthenticationError(INVALID_LOGIN_MESSAGE)

    if passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash(body.password)
        await session.commit()
        await session.refresh(user)
        log.info("password_rehashed", user_id=str(user.id))

    result = await accounts.issue_login(redis, settings, user)
    log.info("login_succeeded", user_id=str(user.id), client_address=address)
    return Envelope(data=result)


@router.post(
    "/logout",
    response_model=Envelope[LogoutOut],
    responses=error_responses(401),
    dependencies=REQUIRES_USER_TOKEN,
    summary="Revoke every token of the caller's account",
)
async def logout(
    claims: UserToken, session: SessionDep, redis: RedisDep
) -> Envelope[LogoutOut]:
    """Revoke every token of the account, on every device and in every service."""
    # Redis first: once the version is bumped there, every service rejects the
    # old tokens, even if the database write below fails.
    version = await bump_token_version(redis, claims.user_id, claims.version)
    await repository.raise_token_version(session, uuid.UUID(claims.user_id), version)
    log.info("logged_out", user_id=claims.user_id)
    return Envelope(data=LogoutOut())


def _login_email(raw: str) -> str:
    # Normalised as at registration; a string that is no valid address cannot
    # match an account, but still goes through the same checks and timing.
    try:
        return normalise_email(raw.strip())
    except ValueError:
        return raw.strip().lower()
