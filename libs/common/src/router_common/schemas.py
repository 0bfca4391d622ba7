"""Base models and the success envelope of the public REST contract."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

DataT = TypeVar("DataT")


class RequestModel(BaseModel):
    """A request body: camelCase names, strict types, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, strict=True, extra="forbid"
    )


class ResponseModel(BaseModel):
    """A response body, serialised with camelCase names."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, from_attributes=True
    )


class Envelope(BaseModel, Generic[DataT]):
    success: bool = True
    data: DataT


class Page(ResponseModel, Generic[DataT]):
    items: list[DataT]
    next_cursor: str | None = None


def ok(data: object) -> dict[str, object]:
    return {"success": True, "data": data}
