"""`/api/v1/users/profile` and `/api/v1/users/password`: the caller's account.

Every route here needs a user JWT. An API key gets 401, so that a leaked key
cannot take over the account.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter

from auth_service import accounts, repository
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
    PasswordChangeRequest,
    ProfileUpdateRequest,
    UserOut,
)
from router_common.errors import ValidationError
from router_common.schemas import Envelope
from router_common.tokens import bump_token_version
from router_common.user_auth import UserToken

router = APIRouter(
    prefix="/api/v1/users", tags=["account"], dependencies=REQUIRES_USER_TOKEN
)
log = structlog.get_logger(__name__)


@router.get(
    "/profile",
    response_model=Envelope[UserOut],
    responses=error_responses(401),
    summary="Read the caller's profile",
)
async def get_profile(claims: UserToken, session: SessionDep) -> Envelope[UserOut]:
    user = await accounts.load_user(session, claims)
    return Envelope(data=UserOut.model_validate(user))


@router.put(
    "/profile",
    response_model=Envelope[UserOut],
    responses=error_responses(400, 401, 409, 429),
    summary="Change the caller's name or email",
)
async def update_profile(
    body: ProfileUpdateRequest,
    claims: UserToken,
    session: SessionDep,
    settings: SettingsDep,
    redis: RedisDep,
    passwords: PasswordsDep,
    address: ClientAddressDep,
) -> Envelope[UserOut]:
    """Change only the fields the body names.

    A new email needs `currentPassword` and must not belong to another account.
    The role and the other stored fields cannot be set here, and unknown fields
    are rejected with 400.
    """
    user = await accounts.load_user(session, claims)
    changed = body.model_fields_set

    if "email" in changed and body.email is not None and body.email != user.email:
        if body.current_password is None:
            raise ValidationError(
                "Invalid request: currentPassword is required to change the email",
                details={
                    "fields": [
                        {
                            "field": "currentPassword",
                            "message": "Required to change the email",
                        }
                    ]
                },
            )
        await accounts.require_current_password(
            redis=redis,
            settings=settings,
            passwords=passwords,
            user=user,
            password=body.current_password,
            address=address,
        )
        user.email = body.email
    if "name" in changed:
        user.name = body.name

    await repository.commit_unique_email(session)
    await session.refresh(user)
    log.info("profile_updated", user_id=str(user.id), fields=sorted(changed))
    return Envelope(data=UserOut.model_validate(user))


@router.put(
    "/password",
    response_model=Envelope[LoginOut],
    responses=error_responses(400, 401, 429),
    summary="Change the password and revoke every earlier token",
)
async def change_password(
    body: PasswordChangeRequest,
    claims: UserToken,
    session: SessionDep,
    settings: SettingsDep,
    redis: RedisDep,
    passwords: PasswordsDep,
    address: ClientAddressDep,
) -> Envelope[LoginOut]:
    """Set a new password and return a fresh token.

    Every token issued before the change is rejected afterwards by every
    service, because the account's token version goes up.
    """
    user = await accounts.load_user(session, claims)
    await accounts.require_current_password(
        redis=redis,
        settings=settings,
        passwords=passwords,
        user=user,
        password=body.current_password,
        address=address,
    )
    new_hash = await passwords.hash(body.new_password)

    # Redis first: the old tokens stop working before the new password is
    # stored, so a failure between the two steps can only log the user out.
    version = await bump_token_version(redis, str(user.id), user.token_version)
    user.password_hash = new_hash
    user.token_version = version
    await session.commit()
    await session.refresh(user)
    log.info("password_changed", user_id=str(user.id))
    return Envelope(data=await accounts.issue_login(redis, settings, user))
