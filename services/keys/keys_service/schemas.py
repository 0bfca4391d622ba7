"""Request and response bodies of the keys service."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, Field, field_validator

from router_common.schemas import RequestModel, ResponseModel

MAX_NAME_LENGTH = 100


class Scope(StrEnum):
    IMAGES_GENERATE = "images:generate"
    IMAGES_READ = "images:read"


DEFAULT_SCOPES = [Scope.IMAGES_GENERATE, Scope.IMAGES_READ]


def _require_string(value: Any) -> Any:
    # Strict mode alone rejects every JSON date-time, and lax mode also accepts
    # numbers as Unix times. Only an ISO 8601 string is valid here.
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string with a time zone")
    return value


KeyName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
ScopeList = Annotated[
    list[Annotated[Scope, Field(strict=False)]],
    Field(min_length=1, max_length=len(Scope)),
]
ExpiryTime = Annotated[
    AwareDatetime, Field(strict=False), BeforeValidator(_require_string)
]
# Requests per minute and images per day; the upper bound depends on the
# owner's role and is checked by the route.
LimitValue = Annotated[int, Field(ge=1)]


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValueError("must not be blank")
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise ValueError("must not contain control characters")
    return name


def _check_unique(scopes: list[Scope]) -> list[Scope]:
    if len(set(scopes)) != len(scopes):
        raise ValueError("must not repeat a scope")
    return scopes


class CreateKeyRequest(RequestModel):
    name: KeyName
    scopes: ScopeList = Field(default_factory=lambda: list(DEFAULT_SCOPES))
    expires_at: ExpiryTime | None = None
    # Omitted or null: the owner's maximum.
    rate_limit: LimitValue | None = None
    daily_image_limit: LimitValue | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return _clean_name(name)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, scopes: list[Scope]) -> list[Scope]:
        return _check_unique(scopes)


class UpdateKeyRequest(RequestModel):
    """A partial update: only the fields present in the body change."""

    name: KeyName | None = None
    scopes: ScopeList | None = None
    # Null removes the expiry.
    expires_at: ExpiryTime | None = None
    rate_limit: LimitValue | None = None
    daily_image_limit: LimitValue | None = None
    is_active: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        return None if name is None else _clean_name(name)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, scopes: list[Scope] | None) -> list[Scope] | None:
        return None if scopes is None else _check_unique(scopes)


# Fields of UpdateKeyRequest that may not be sent as null.
NON_NULLABLE_UPDATE_FIELDS = (
    "name",
    "scopes",
    "rate_limit",
    "daily_image_limit",
    "is_active",
)


class KeyOut(ResponseModel):
    id: uuid.UUID
    name: str
    # The first characters of the key, enough to recognise it in a list.
    prefix: str
    last_four: str
    scopes: list[str]
    rate_limit: int | None
    daily_image_limit: int | None
    is_active: bool
    expires_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CreatedKeyOut(KeyOut):
    # The full key, returned by the create call only.
    key: str


class DeletedKeyOut(ResponseModel):
    id: uuid.UUID
