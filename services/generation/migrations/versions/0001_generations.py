"""Create the generations, attempts and images tables.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "generation"


def _created_at() -> sa.Column:
    return sa.Column(
        "created_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.func.now(),
    )


def upgrade() -> None:
    op.create_table(
        "generations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("api_key_id", sa.Uuid()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("size", sa.String(16), nullable=False),
        sa.Column("model", sa.String(64)),
        sa.Column("quality", sa.String(16)),
        sa.Column("style", sa.String(16)),
        sa.Column("response_format", sa.String(16), nullable=False),
        sa.Column("options", JSONB(), nullable=False, server_default="{}"),
        sa.Column("provider_id", sa.Uuid()),
        sa.Column("provider_name", sa.String(64)),
        sa.Column("cost", sa.Numeric(14, 6), nullable=False, server_default="0"),
        sa.Column("error", JSONB()),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("run_count", sa.Integer(), nullable=False, server_default="0"),
        _created_at(),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')",
            name="generations_status_valid",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "generations_user_created",
        "generations",
        ["user_id", sa.text("created_at DESC"), sa.text("id DESC")],
        schema=SCHEMA,
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "generation_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.generations.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("provider_name", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("error_type", sa.String(64)),
        sa.Column("error_message", sa.String(500)),
        sa.Column("status_code", sa.Integer()),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("images_requested", sa.Integer(), nullable=False),
        _created_at(),
        schema=SCHEMA,
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "generation_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.generations.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(128), nullable=False, unique=True),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("byte_size", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("cost", sa.Numeric(14, 6), nullable=False),
        sa.Column("revised_prompt", sa.Text()),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("images", schema=SCHEMA)
    op.drop_table("attempts", schema=SCHEMA)
    op.drop_table("generations", schema=SCHEMA)
