"""Alerts: per (monitor, check, column) whether it is firing (so one ongoing drift is one
alert, across restarts), and every delivery attempted with its outcome.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_state",
        sa.Column("monitor", sa.String(128), primary_key=True),
        sa.Column("check_name", sa.String(64), primary_key=True),
        sa.Column("column_name", sa.String(256), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("incident", sa.String(36), nullable=False),
        sa.Column("since", sa.BigInteger, nullable=False),
        sa.Column("notice", sa.Integer, nullable=False),
        sa.Column("notice_key", sa.String(64), nullable=False),
        sa.Column("notified_at", sa.BigInteger, nullable=False),
        sa.Column("pending", sa.Integer, nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("monitor", sa.String(128), nullable=False),
        sa.Column("check_name", sa.String(64), nullable=False),
        sa.Column("column_name", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("notice_key", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(256), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_alert_deliveries_monitor", "alert_deliveries", ["monitor", "id"])
    op.create_index("ix_alert_deliveries_key", "alert_deliveries", ["notice_key"])


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_key", "alert_deliveries")
    op.drop_index("ix_alert_deliveries_monitor", "alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_table("alert_state")
