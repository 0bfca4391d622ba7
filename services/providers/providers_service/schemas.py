"""Request and response bodies of the providers service."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, field_serializer

from router_common.schemas import RequestModel, ResponseModel
from router_common.url_guard import Allowlist, UnsafeUrlError, check_url

SIZE_PATTERN = r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class ProviderType(StrEnum):
    OPENAI = "openai"
    OPENAI_COMPATIBLE = "openai_compatible"
    STABILITY = "stability"
    MIDJOURNEY = "midjourney"


class ProviderStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    MAINTENANCE = "maintenance"


# The allowlist is a deployment setting; the app installs it at start-up.
_allowlist = Allowlist.parse("")


def set_url_allowlist(allowlist: Allowlist) -> None:
    global _allowlist
    _allowlist = allowlist


def _safe_url(value: str) -> str:
    try:
        check_url(value, _allowlist)
    except UnsafeUrlError as error:
        raise ValueError(f"baseUrl {error}") from None
    return value.rstrip("/")


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("must not repeat a value")
    return values


Size = Annotated[str, Field(pattern=SIZE_PATTERN, max_length=11)]
ModelName = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:/-]+$")
]
# Lax so that a JSON string or number is accepted; either is read exactly.
CostPerImage = Annotated[
    Decimal, Field(strict=False, ge=0, le=1000, max_digits=12, decimal_places=6)
]


class ProviderCreate(RequestModel):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN)]
    type: Annotated[ProviderType, Field(strict=False)]
    api_key: Annotated[str, Field(min_length=1, max_length=512)]
    base_url: Annotated[
        str, Field(min_length=1, max_length=2048), AfterValidator(_safe_url)
    ]
    priority: Annotated[int, Field(ge=0, le=10_000)] = 100
    weight: Annotated[int, Field(ge=1, le=1000)] = 1
    # Requests per minute; 0 means no limit.
    rate_limit: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    cost_per_image: CostPerImage
    supported_sizes: Annotated[
        list[Size], Field(min_length=1, max_length=50), AfterValidator(_unique)
    ]
    models: Annotated[
        list[ModelName], Field(max_length=50), AfterValidator(_unique)
    ] = []
    max_images_per_request: Annotated[int, Field(ge=1, le=10)] = 1
    # Milliseconds.
    timeout: Annotated[int, Field(ge=1000, le=600_000)] = 60_000
    status: Annotated[ProviderStatus, Field(strict=False)] = ProviderStatus.ACTIVE


class ProviderOut(ResponseModel):
    id: uuid.UUID
    name: str
    type: str
    api_key_hint: str
    base_url: str
    priority: int
    weight: int
    rate_limit: int
    cost_per_image: Decimal
    supported_sizes: list[str]
    models: list[str]
    max_images_per_request: int
    timeout: int = Field(validation_alias="timeout_ms")
    status: str
    created_at: datetime
    updated_at: datetime

    @field_serializer("cost_per_image")
    def _exact_cost(self, value: Decimal) -> str:
        # A string keeps the decimal exact for every client.
        return format(value.normalize(), "f")
