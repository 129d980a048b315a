"""Access: per-resource grants, protected aliases and the alias changes waiting for approvals.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("subject", sa.String(160), primary_key=True),  # role:NAME or user:NAME
        sa.Column("permission", sa.String(32), primary_key=True),
        sa.Column("resource", sa.String(400), primary_key=True),  # table:X, model:X, alias:M@A
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
    )
    op.create_table(
        "protected_aliases",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("approvals", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
    )
    op.create_table(
        "alias_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),  # promote | rollback
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("requested_at", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("approvers", sa.Text, nullable=False),  # JSON list of user names
        sa.Column("status", sa.String(16), nullable=False),  # pending | applied | rejected
        sa.Column("closed_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_alias_requests_open", "alias_requests", ["model", "alias", "status"])


def downgrade() -> None:
    op.drop_index("ix_alias_requests_open", "alias_requests")
    op.drop_table("alias_requests")
    op.drop_table("protected_aliases")
    op.drop_table("grants")
