"""Request and response bodies of the providers service."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_serializer, field_validator

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


def get_url_allowlist() -> Allowlist:
    return _allowlist


def _safe_url(value: str) -> str:
    try:
        check_url(value, _allowlist)
    except UnsafeUrlError as error:
        raise ValueError(f"baseUrl {error}") from None
    parts = urlsplit(value)
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        # Adapters append paths to the base URL, so a query or fragment would
        # end up in the wrong place of every call.
        raise ValueError("baseUrl must not have a query or a fragment")
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


ProviderName = Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN)]
TypeField = Annotated[ProviderType, Field(strict=False)]
ApiKey = Annotated[str, Field(min_length=1, max_length=512)]
BaseUrl = Annotated[
    str, Field(min_length=1, max_length=2048), AfterValidator(_safe_url)
]
Priority = Annotated[int, Field(ge=0, le=10_000)]
Weight = Annotated[int, Field(ge=1, le=1000)]
# Requests per minute; 0 means no limit.
RateLimit = Annotated[int, Field(ge=0, le=1_000_000)]
SupportedSizes = Annotated[
    list[Size], Field(min_length=1, max_length=50), AfterValidator(_unique)
]
Models = Annotated[list[ModelName], Field(max_length=50), AfterValidator(_unique)]
MaxImages = Annotated[int, Field(ge=1, le=10)]
# Milliseconds.
TimeoutMs = Annotated[int, Field(ge=1000, le=600_000)]
StatusField = Annotated[ProviderStatus, Field(strict=False)]


class ProviderCreate(RequestModel):
    name: ProviderName
    type: TypeField
    api_key: ApiKey
    base_url: BaseUrl
    priority: Priority = 100
    weight: Weight = 1
    rate_limit: RateLimit = 0
    cost_per_image: CostPerImage
    supported_sizes: SupportedSizes
    models: Models = []
    max_images_per_request: MaxImages = 1
    timeout: TimeoutMs = 60_000
    status: StatusField = ProviderStatus.ACTIVE


class ProviderUpdate(RequestModel):
    """A partial update: only the fields the body names change.

    `null` is rejected for every field, because none of them may be empty.
    """

    name: ProviderName | None = None
    type: TypeField | None = None
    api_key: ApiKey | None = None
    base_url: BaseUrl | None = None
    priority: Priority | None = None
    weight: Weight | None = None
    rate_limit: RateLimit | None = None
    cost_per_image: CostPerImage | None = None
    supported_sizes: SupportedSizes | None = None
    models: Models | None = None
    max_images_per_request: MaxImages | None = None
    timeout: TimeoutMs | None = None
    status: StatusField | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _reject_null(cls, value: object) -> object:
        # Defaults are not validated, so only an explicit null reaches this.
        if value is None:
            raise ValueError("must not be null; omit the field to keep its value")
        return value


class StatusUpdate(RequestModel):
    status: StatusField


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


class LastError(ResponseModel):
    type: str
    message: str
    at: datetime


class ProviderHealth(ResponseModel):
    """Live health from the statistics that the registry keeps in Redis."""

    circuit_state: str
    consecutive_failures: int
    # Attempts in the window the figures below are computed over.
    recent_attempts: int
    # Share of successes among recent successes, errors and time-outs; null
    # when there were none.
    success_rate: float | None
    # Percentiles of the latency of recent successful attempts, in ms.
    p50_latency_ms: int | None
    p95_latency_ms: int | None
    calls_last_minute: int
    paused_until: datetime | None
    last_error: LastError | None


class ProviderDetail(ProviderOut):
    health: ProviderHealth
