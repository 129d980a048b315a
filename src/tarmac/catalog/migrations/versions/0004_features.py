"""The feature store: versioned definitions, their consumers, and materializations.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_defs",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("removed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
    )
    op.create_table(
        "feature_consumers",
        sa.Column("consumer", sa.String(256), primary_key=True),
        sa.Column("ref", sa.String(256), primary_key=True),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_feature_consumers_ref", "feature_consumers", ["ref"])
    op.create_table(
        "feature_materializations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("view", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("ended_at", sa.BigInteger, nullable=True),
        sa.Column("inputs", sa.Text, nullable=False, server_default="{}"),
        sa.Column("rows", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("entities", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("stats", sa.Text, nullable=False, server_default="{}"),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_feature_mat_view", "feature_materializations", ["view", "started_at"])


def downgrade() -> None:
    op.drop_table("feature_materializations")
    op.drop_table("feature_consumers")
    op.drop_table("feature_defs")
