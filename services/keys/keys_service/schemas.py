"""Request and response bodies of the keys service."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from router_common.schemas import RequestModel, ResponseModel

MAX_NAME_LENGTH = 100


class Scope(StrEnum):
    IMAGES_GENERATE = "images:generate"
    IMAGES_READ = "images:read"


DEFAULT_SCOPES = [Scope.IMAGES_GENERATE, Scope.IMAGES_READ]


class CreateKeyRequest(RequestModel):
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
    scopes: Annotated[
        list[Annotated[Scope, Field(strict=False)]],
        Field(min_length=1, max_length=len(Scope)),
    ] = Field(default_factory=lambda: list(DEFAULT_SCOPES))


class KeyOut(ResponseModel):
    id: uuid.UUID
    name: str
    prefix: str
    last_four: str
    scopes: list[str]
    rate_limit: int | None
    daily_image_limit: int | None
    is_active: bool
    expires_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime


class CreatedKeyOut(KeyOut):
    # The full key, returned by the create call only.
    key: str
