"""Ingestion state: per-source cursors and contracts, files already loaded, and each load.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_state",
        sa.Column("source", sa.String(128), primary_key=True),
        sa.Column("stream", sa.String(128), primary_key=True),
        sa.Column("table_name", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("cursor", sa.Text, nullable=True),
        sa.Column("contract", sa.Text, nullable=True),
        sa.Column("rows_total", sa.BigInteger, nullable=False),
        sa.Column("last_run_id", sa.String(36), nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "source_files",
        sa.Column("source", sa.String(128), primary_key=True),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("loaded_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "source_loads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("stream", sa.String(128), nullable=False),
        sa.Column("table_name", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("ended_at", sa.BigInteger, nullable=True),
        sa.Column("stats", sa.Text, nullable=False, server_default="{}"),
        sa.Column("plan", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_source_loads_source", "source_loads", ["source", "started_at"])
    op.create_index("ix_source_loads_status", "source_loads", ["status"])


def downgrade() -> None:
    op.drop_table("source_loads")
    op.drop_table("source_files")
    op.drop_table("source_state")
