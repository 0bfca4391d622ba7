"""Request and response bodies of the auth service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, Field, field_validator

from router_common.schemas import RequestModel, ResponseModel

MIN_PASSWORD_LENGTH = 8
# Bounded so that hashing a huge password cannot be used to burn CPU. Longer
# bodies are rejected by validation before any hashing starts.
MAX_PASSWORD_LENGTH = 256
MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100


def normalise_email(value: str) -> str:
    """Validate an email address and return it normalised to lower case.

    Raises ValueError naming what is wrong with the address.
    """
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"Invalid email address: {error}") from None
    return result.normalized.lower()


Email = Annotated[
    str, Field(max_length=MAX_EMAIL_LENGTH), AfterValidator(normalise_email)
]
Password = Annotated[
    str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
]
# A password that is only compared with a stored hash. It has no minimum, so the
# response to a short one is the same 401 as to any wrong password.
PasswordAttempt = Annotated[str, Field(max_length=MAX_PASSWORD_LENGTH)]
DisplayName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]


class RegisterRequest(RequestModel):
    email: Email
    password: Password
    name: DisplayName | None = None


class LoginRequest(RequestModel):
    email: Annotated[str, Field(max_length=MAX_EMAIL_LENGTH)]
    password: PasswordAttempt


class ProfileUpdateRequest(RequestModel):
    """Fields to change. Omitted fields keep their values, `name: null` clears."""

    name: DisplayName | None = None
    email: Email | None = None
    # Required when `email` changes the address.
    current_password: PasswordAttempt | None = None

    @field_validator("email", mode="before")
    @classmethod
    def _reject_null_email(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(
                "Email cannot be null. Omit the field to keep the current email"
            )
        return value


class PasswordChangeRequest(RequestModel):
    current_password: PasswordAttempt
    new_password: Password


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
    # Seconds until the token expires.
    expires_in: int
    user: UserOut


class LogoutOut(ResponseModel):
    # Every token of the account issued before this logout is now rejected.
    logged_out: Literal[True] = True


class ErrorDetail(BaseModel):
    type: str
    message: str
    details: dict[str, Any]


class ErrorEnvelope(BaseModel):
    """The body of every error response under `/api/v1`."""

    success: Literal[False] = False
    error: ErrorDetail
