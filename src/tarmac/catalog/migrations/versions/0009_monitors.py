"""Monitors: the declarations evaluated, one row per evaluated window (so a window is evaluated
once, by one process, across restarts), and the retraining loops they start.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitors",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("every_seconds", sa.BigInteger, nullable=False),
        sa.Column("window_seconds", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "monitor_runs",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("monitor", sa.String(128), nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("window_end", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.Column("checks", sa.Integer, nullable=True),
        sa.Column("failing", sa.Integer, nullable=True),
        sa.Column("undecided", sa.Integer, nullable=True),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.UniqueConstraint("monitor", "window_end", name="uq_monitor_runs_window"),
    )
    op.create_index("ix_monitor_runs_monitor", "monitor_runs", ["monitor", "window_end"])
    op.create_table(
        "retrain_loops",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("monitor", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("trigger_run", sa.String(36), nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("champion", sa.Integer, nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("canary_since", sa.BigInteger, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_retrain_loops_model", "retrain_loops", ["model", "state"])


def downgrade() -> None:
    op.drop_index("ix_retrain_loops_model", "retrain_loops")
    op.drop_table("retrain_loops")
    op.drop_index("ix_monitor_runs_monitor", "monitor_runs")
    op.drop_table("monitor_runs")
    op.drop_table("monitors")
