"""Base models and the success envelope of the public REST contract."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel

DataT = TypeVar("DataT")


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(_contains_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    return False


class NoNulModel(BaseModel):
    """A request body whose text may not contain NUL characters, which Postgres
    cannot store, so that such input is a 400 naming the field, never a 500."""

    @field_validator("*", mode="after")
    @classmethod
    def _reject_nul(cls, value: Any) -> Any:
        if _contains_nul(value):
            raise ValueError("must not contain NUL (U+0000) characters")
        return value


class RequestModel(NoNulModel):
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
