"""Retention policies: how long each lake table keeps its rows.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_policies",
        sa.Column("table_name", sa.String(256), primary_key=True),
        sa.Column("keep_seconds", sa.BigInteger, nullable=False),
        sa.Column("time_column", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("applied_at", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("retention_policies")
