"""Index audit records by (actor, time): `tarmac audit log --actor X --since 1h` stays a range scan.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_actor_time", "audit_log", ["actor", "time"])


def downgrade() -> None:
    op.drop_index("ix_audit_actor_time", table_name="audit_log")
