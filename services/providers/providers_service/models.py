"""Tables of the providers service, all in the `providers` schema."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    ARRAY,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "providers"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)


class Provider(Base):
    __tablename__ = "providers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    # Fernet token of the provider's API key.
    api_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    api_key_hint: Mapped[str] = mapped_column(String(16))
    base_url: Mapped[str] = mapped_column(String(2048))
    priority: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    rate_limit: Mapped[int] = mapped_column(Integer, default=0)
    cost_per_image: Mapped[Decimal] = mapped_column(Numeric(12, 6))
    supported_sizes: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    models: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    max_images_per_request: Mapped[int] = mapped_column(Integer)
    timeout_ms: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
