"""Models: training runs, versions, aliases with their history, validations and gate results.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "train_runs",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("reproduces", sa.String(36), nullable=True),
        sa.Column("params", sa.Text, nullable=False, server_default="{}"),
        sa.Column("metrics", sa.Text, nullable=False, server_default="{}"),
        sa.Column("slices", sa.Text, nullable=False, server_default="{}"),
        sa.Column("inputs", sa.Text, nullable=False, server_default="{}"),
        sa.Column("definitions", sa.Text, nullable=False, server_default="{}"),
        sa.Column("environment", sa.Text, nullable=False, server_default="{}"),
        sa.Column("details", sa.Text, nullable=False, server_default="{}"),
        sa.Column("fit_seconds", sa.BigInteger, nullable=True),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("ended_at", sa.BigInteger, nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.UniqueConstraint("model", "seq", name="uq_train_runs_seq"),
    )
    op.create_index("ix_train_runs_model", "train_runs", ["model", "started_at"])
    op.create_table(
        "model_versions",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("flavor", sa.String(32), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("artifact", sa.String(64), nullable=False),
        sa.Column("holdout", sa.String(64), nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False, server_default="{}"),
        sa.Column("profile", sa.Text, nullable=False, server_default="{}"),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("tags", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
    )
    op.create_table(
        "model_aliases",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
    )
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("forced", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("validation_id", sa.String(36), nullable=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
    )
    op.create_index("ix_alias_history", "alias_history", ["model", "alias", "id"])
    op.create_table(
        "validations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("champion", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("gates", sa.String(64), nullable=False),
        sa.Column("report", sa.Text, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("seconds", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
    )
    op.create_index("ix_validations_version", "validations", ["model", "version", "at"])
    op.create_table(
        "gate_results",
        sa.Column("validation_id", sa.String(36), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("value", sa.Text, nullable=True),
        sa.Column("threshold", sa.Text, nullable=True),
        sa.Column("why", sa.Text, nullable=False),
    )
    op.create_index("ix_gate_results_version", "gate_results", ["model", "version"])


def downgrade() -> None:
    for table in ("gate_results", "validations", "alias_history", "model_aliases",
                  "model_versions", "train_runs"):
        op.drop_table(table)
