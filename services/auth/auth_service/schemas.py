"""Request and response bodies of the auth service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field

from router_common.schemas import RequestModel, ResponseModel

MIN_PASSWORD_LENGTH = 8
# Bounded so that hashing a huge password cannot be used to burn CPU.
MAX_PASSWORD_LENGTH = 256
MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100


def _normalise_email(value: str) -> str:
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"Invalid email address: {error}") from None
    return result.normalized.lower()


Email = Annotated[
    str, Field(max_length=MAX_EMAIL_LENGTH), AfterValidator(_normalise_email)
]
Password = Annotated[
    str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
]
DisplayName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]


class RegisterRequest(RequestModel):
    email: Email
    password: Password
    name: DisplayName | None = None


class LoginRequest(RequestModel):
    email: Annotated[str, Field(max_length=MAX_EMAIL_LENGTH)]
    password: Annotated[str, Field(max_length=MAX_PASSWORD_LENGTH)]


class UserOut(ResponseModel):
    id: uuid.UUID
    email: str
    name: str | None
    role: str
    created_at: datetime
    updated_at: datetime


class LoginOut(ResponseModel):
    token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    user: UserOut
