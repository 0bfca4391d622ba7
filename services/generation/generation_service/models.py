"""Tables of the generation service, all in the `generation` schema.

Every generation is a job row: the process that runs it holds a lease
(`lease_owner`, `lease_expires_at`) and renews it while it works, so that a job
whose process died can be claimed again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA = "generation"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class Generation(Base):
    __tablename__ = "generations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    api_key_id: Mapped[uuid.UUID | None]
    # queued, running, succeeded or failed.
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    prompt: Mapped[str] = mapped_column(Text)
    n: Mapped[int] = mapped_column(Integer)
    size: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(64))
    quality: Mapped[str | None] = mapped_column(String(16))
    style: Mapped[str | None] = mapped_column(String(16))
    response_format: Mapped[str] = mapped_column(String(16))
    # Options of the request that routing needs: pinned provider, strategy.
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    provider_id: Mapped[uuid.UUID | None]
    provider_name: Mapped[str | None] = mapped_column(String(64))
    cost: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=Decimal(0))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    attempts: Mapped[list[Attempt]] = relationship(
        order_by="Attempt.created_at", lazy="selectin", cascade="all, delete-orphan"
    )
    images: Mapped[list[Image]] = relationship(
        order_by="Image.position", lazy="selectin", cascade="all, delete-orphan"
    )


class Attempt(Base):
    """One call to one provider on behalf of a generation."""

    __tablename__ = "attempts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    generation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE"), index=True
    )
    provider_id: Mapped[uuid.UUID]
    provider_name: Mapped[str] = mapped_column(String(64))
    # success, error, timeout, rate_limited, content_policy or invalid_request.
    outcome: Mapped[str] = mapped_column(String(32))
    error_type: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(500))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    images_requested: Mapped[int] = mapped_column(Integer)
    # What the adapter noted about the call, e.g. the aspect ratio a size mapped to.
    notes: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Image(Base):
    """A stored image, served by nginx under its random file name."""

    __tablename__ = "images"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    generation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str] = mapped_column(String(128), unique=True)
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(Integer)
    provider_id: Mapped[uuid.UUID]
    cost: Mapped[Decimal] = mapped_column(Numeric(14, 6))
    revised_prompt: Mapped[str | None] = mapped_column(Text)


class IdempotencyKey(Base):
    """A client's Idempotency-Key, bound to the body it first came with."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 of the canonical request body, hex.
    request_hash: Mapped[str] = mapped_column(String(64))
    generation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
