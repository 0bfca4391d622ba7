"""`/api/v1/users`: registration, login and the caller's profile."""

from __future__ import annotations

import uuid

import structlog
from fastapi import APIRouter, status

from auth_service import repository
from auth_service.deps import PasswordsDep, RedisDep, SessionDep, SettingsDep
from auth_service.schemas import LoginOut, LoginRequest, RegisterRequest, UserOut
from router_common.errors import AuthenticationError, NotFoundError
from router_common.schemas import Envelope
from router_common.tokens import current_token_version, issue_token
from router_common.user_auth import UserToken

router = APIRouter(prefix="/api/v1/users", tags=["users"])
log = structlog.get_logger(__name__)

INVALID_LOGIN_MESSAGE = "Invalid email or password"


@router.post(
    "/register", status_code=status.HTTP_201_CREATED, response_model=Envelope[UserOut]
)
async def register(
    body: RegisterRequest, session: SessionDep, passwords: PasswordsDep
) -> Envelope[UserOut]:
    password_hash = await passwords.hash(body.password)
    user = await repository.create_user(
        session,
        email=body.email,
        password_hash=password_hash,
        name=body.name,
        role="user",
    )
    log.info("user_registered", user_id=str(user.id))
    return Envelope(data=UserOut.model_validate(user))


@router.post("/login", response_model=Envelope[LoginOut])
async def login(
    body: LoginRequest,
    session: SessionDep,
    settings: SettingsDep,
    redis: RedisDep,
    passwords: PasswordsDep,
) -> Envelope[LoginOut]:
    user = await repository.get_by_email(session, body.email.strip())
    if not await passwords.verify(user.password_hash if user else None, body.password):
        log.info("login_failed")
        raise AuthenticationError(INVALID_LOGIN_MESSAGE)
    assert user is not None

    if passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash(body.password)
        await session.commit()

    version = await current_token_version(redis, str(user.id))
    token, expires_in = issue_token(
        secret=settings.jwt_secret,
        user_id=str(user.id),
        role=user.role,
        version=version,
        ttl_seconds=settings.jwt_ttl_seconds,
    )
    log.info("login_succeeded", user_id=str(user.id))
    return Envelope(
        data=LoginOut(
            token=token, expires_in=expires_in, user=UserOut.model_validate(user)
        )
    )


@router.get("/profile", response_model=Envelope[UserOut])
async def get_profile(claims: UserToken, session: SessionDep) -> Envelope[UserOut]:
    user = await repository.get_by_id(session, uuid.UUID(claims.user_id))
    if user is None:
        raise NotFoundError("User not found")
    return Envelope(data=UserOut.model_validate(user))
