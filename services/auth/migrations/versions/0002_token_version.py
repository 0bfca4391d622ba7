"""Add the users' token version, the durable copy of the one in Redis.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("token_version", sa.Integer(), nullable=False, server_default="0"),
        schema="auth",
    )


def downgrade() -> None:
    op.drop_column("users", "token_version", schema="auth")
