"""Deployments: per endpoint (a model name), the canary version and percentage and the shadow
version served beside the champion alias, with the history of every change.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("endpoint", sa.String(128), primary_key=True),
        sa.Column("canary_version", sa.Integer, nullable=True),
        sa.Column("canary_percent", sa.Float, nullable=True),
        sa.Column("shadow_version", sa.Integer, nullable=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
    )
    op.create_table(
        "deployment_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("canary_version", sa.Integer, nullable=True),
        sa.Column("canary_percent", sa.Float, nullable=True),
        sa.Column("shadow_version", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
    )
    op.create_index("ix_deployment_history", "deployment_history", ["endpoint", "id"])


def downgrade() -> None:
    op.drop_index("ix_deployment_history", "deployment_history")
    op.drop_table("deployment_history")
    op.drop_table("deployments")
