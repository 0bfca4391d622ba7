"""Request and response bodies of the generation service.

The generation request keeps OpenAI's field names (`response_format`, ...), so
that one body serves both the router's API and the OpenAI-compatible surface.
Responses of the router's API use camelCase.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
)

from router_common.schemas import NoNulModel, ResponseModel

MAX_PROMPT_LENGTH = 32_000
MAX_IMAGES = 10
SIZE_PATTERN = r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$"
DEFAULT_SIZE = "1024x1024"


class GenerationRequest(NoNulModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    prompt: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_LENGTH)]
    n: Annotated[int, Field(ge=1, le=MAX_IMAGES)] = 1
    size: Annotated[str, Field(pattern=SIZE_PATTERN, max_length=11)] = DEFAULT_SIZE
    response_format: Literal["url", "b64_json"] = "url"
    model: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    quality: Literal["standard", "hd", "low", "medium", "high", "auto"] | None = None
    style: Literal["vivid", "natural"] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    # Pin one provider by name.
    provider: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    routing: Literal["priority", "latency", "cost", "round_robin"] | None = None
    # Return 202 at once and let a worker run the job (also `Prefer: respond-async`).
    run_async: bool = Field(default=False, alias="async")

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, prompt: str) -> str:
        # A prompt of spaces alone would be sent to (and paid at) a provider.
        if not prompt.strip():
            raise ValueError("prompt must contain text, not only whitespace")
        return prompt


class ProviderRef(ResponseModel):
    id: uuid.UUID
    name: str


class ImageOut(ResponseModel):
    """An image: its stored URL, or its bytes in base64 when they were asked for."""

    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None

    @model_serializer(mode="wrap")
    def _drop_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        return {
            name: value for name, value in handler(self).items() if value is not None
        }


class AttemptOut(ResponseModel):
    provider: str
    outcome: str
    error_type: str | None
    latency_ms: int
    notes: dict[str, str] | None = None


class GenerationOut(ResponseModel):
    id: uuid.UUID
    status: str
    progress: int
    prompt: str
    n: int
    size: str
    model: str | None
    response_format: str
    provider: ProviderRef | None
    images: list[ImageOut]
    attempts: list[AttemptOut]
    cost: Decimal
    created_at: datetime
    completed_at: datetime | None
    error: dict[str, object] | None

    @field_serializer("cost")
    def _exact_cost(self, value: Decimal) -> str:
        return format(value.normalize(), "f")


class UsageDay(ResponseModel):
    date: str
    images: int
    cost: Decimal

    @field_serializer("cost")
    def _exact_cost(self, value: Decimal) -> str:
        return format(value.normalize(), "f")


class UsageProvider(ResponseModel):
    provider: str
    images: int
    cost: Decimal

    @field_serializer("cost")
    def _exact_cost(self, value: Decimal) -> str:
        return format(value.normalize(), "f")


class UsageOut(ResponseModel):
    days: int
    total_images: int
    total_cost: Decimal
    by_day: list[UsageDay]
    by_provider: list[UsageProvider]

    @field_serializer("total_cost")
    def _exact_cost(self, value: Decimal) -> str:
        return format(value.normalize(), "f")
