"""Add idempotency keys and the index workers claim jobs by.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "generation"


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column(
            "generation_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.generations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        schema=SCHEMA,
    )
    # Workers look for queued jobs and running jobs whose lease has expired.
    op.create_index(
        "generations_claimable",
        "generations",
        ["created_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("generations_claimable", table_name="generations", schema=SCHEMA)
    op.drop_table("idempotency_keys", schema=SCHEMA)
