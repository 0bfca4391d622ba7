"""Keep the adapter's notes on each attempt.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("notes", JSONB()), schema="generation")


def downgrade() -> None:
    op.drop_column("attempts", "notes", schema="generation")
