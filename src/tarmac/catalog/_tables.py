"""The catalog's tables (SQLAlchemy Core). Changes here need an Alembic revision in migrations/.

Times are integer microseconds since the epoch (UTC): exact on every dialect, which the audit
hash chain needs, and cheap to index and compare.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

datasets = Table(
    "datasets",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("uri", Text, nullable=False),
    Column("owner", String(128), nullable=False),
    Column("description", Text, nullable=True),
    Column("tags", Text, nullable=False, default="[]"),  # JSON list
    Column("columns", Text, nullable=False, default="[]"),  # JSON [{name, type, nullable, tags}]
    Column("version", BigInteger, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("files", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("last_run_id", String(36), nullable=True),
    Column("last_actor", String(128), nullable=True),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("job", String(256), nullable=False),
    Column("status", String(16), nullable=False),  # running | succeeded | failed
    Column("actor", String(128), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("params", Text, nullable=False, default="{}"),  # JSON
    Column("host", String(256), nullable=False),
    Column("pid", Integer, nullable=False),
    Index("ix_runs_started", "started_at", "id"),
    Index("ix_runs_job_started", "job", "started_at", "id"),
    Index("ix_runs_status", "status"),
)

lineage_edges = Table(
    "lineage_edges",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id"), nullable=False),
    Column("role", String(8), nullable=False),  # input | output
    Column("dataset", String(128), nullable=False),
    Column("version", BigInteger, nullable=True),
    UniqueConstraint("run_id", "role", "dataset", "version", name="uq_lineage_edge"),
    Index("ix_lineage_dataset", "dataset", "role"),
    Index("ix_lineage_run", "run_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(256), nullable=False),
    Column("details", Text, nullable=False),  # canonical JSON, hashed as stored
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_time", "time"),
    Index("ix_audit_actor_seq", "actor", "seq"),
    Index("ix_audit_actor_time", "actor", "time"),
    Index("ix_audit_target_seq", "target", "seq"),
)

# -- ingestion: where each source stands ---------------------------------------------------------

source_state = Table(
    "source_state",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("stream", String(128), primary_key=True),  # one lake table per stream
    Column("table_name", String(128), nullable=False),
    Column("seq", BigInteger, nullable=False),  # loads committed so far (the Delta txn version)
    Column("cursor", Text, nullable=True),  # JSON {"value": ..., "type": ...}: the high-water mark
    Column("contract", Text, nullable=True),  # JSON [{name, type}]: the schema rows must meet
    Column("rows_total", BigInteger, nullable=False),
    Column("last_run_id", String(36), nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)

source_files = Table(
    "source_files",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("loaded_at", BigInteger, nullable=False),
)

source_loads = Table(
    "source_loads",
    metadata,
    Column("id", String(64), primary_key=True),  # run id + stream
    Column("source", String(128), nullable=False),
    Column("stream", String(128), nullable=False),
    Column("table_name", String(128), nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # staged | committed | failed
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=True),
    Column("stats", Text, nullable=False, default="{}"),  # JSON counts, bytes, seconds, cursors
    Column("plan", Text, nullable=True),  # JSON: what the commit phase applies (roll-forward)
    Column("error", Text, nullable=True),
    Index("ix_source_loads_source", "source", "started_at"),
    Index("ix_source_loads_status", "status"),
)

# -- the feature store: definitions (versioned), who consumes them, materializations -----------

feature_defs = Table(
    "feature_defs",
    metadata,
    Column("kind", String(16), primary_key=True),  # entity | view | on_demand | service
    Column("name", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("spec", Text, nullable=False),  # JSON, as declared (plus the source schema seen)
    Column("hash", String(64), nullable=False),
    Column("removed", Integer, nullable=False, default=0),  # 1: this version removes it
    Column("created_at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
)

feature_consumers = Table(
    "feature_consumers",
    metadata,
    Column("consumer", String(256), primary_key=True),  # training_set:NAME, model:NAME@V
    Column("ref", String(256), primary_key=True),  # view:feature
    Column("dtype", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_feature_consumers_ref", "ref"),
)

feature_materializations = Table(
    "feature_materializations",
    metadata,
    Column("id", String(64), primary_key=True),  # run id + view
    Column("view", String(128), nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("mode", String(16), nullable=False),  # full | incremental | since | skipped
    Column("status", String(16), nullable=False),  # succeeded | failed
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=True),
    Column("inputs", Text, nullable=False, default="{}"),  # JSON {table: version}
    Column("rows", BigInteger, nullable=False, default=0),  # source rows read
    Column("entities", BigInteger, nullable=False, default=0),  # online records written
    Column("stats", Text, nullable=False, default="{}"),  # JSON per-feature profile
    Column("error", Text, nullable=True),
    Index("ix_feature_mat_view", "view", "started_at"),
)
