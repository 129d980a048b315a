"""The catalog's tables (SQLAlchemy Core). Changes here need an Alembic revision in migrations/.

Times are integer microseconds since the epoch (UTC): exact on every dialect, which the audit
hash chain needs, and cheap to index and compare.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
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

# -- who the catalog belongs to: key "project" holds the project's name (claimed on open) -------

catalog_info = Table(
    "catalog_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

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
    # HMAC-SHA256 of ``hash`` with the audit key (kept outside the catalog) and that key's id;
    # NULL on records written before keying was turned on (migration 0012)
    Column("mac", String(64), nullable=True),
    Column("key_id", String(16), nullable=True),
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

# -- models: training runs, the registry, aliases and their history, gate results -------------

train_runs = Table(
    "train_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),  # the ledger run
    Column("model", String(128), nullable=False),
    Column("seq", Integer, nullable=False),  # the model's training run number (1, 2, ...)
    Column("status", String(16), nullable=False),  # running | succeeded | failed
    Column("version", Integer, nullable=True),  # the model version it registered
    Column("reproduces", String(36), nullable=True),  # run id this one re-ran
    Column("params", Text, nullable=False, default="{}"),
    Column("metrics", Text, nullable=False, default="{}"),  # holdout metrics
    Column("slices", Text, nullable=False, default="{}"),  # column -> slice -> metrics
    Column("inputs", Text, nullable=False, default="{}"),  # lake table -> version read
    Column("definitions", Text, nullable=False, default="{}"),  # feature view -> version
    Column("environment", Text, nullable=False, default="{}"),  # git, packages, python
    Column("details", Text, nullable=False, default="{}"),  # rows, split, artifacts, code hash
    Column("fit_seconds", BigInteger, nullable=True),  # microseconds in the user's function
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=True),
    Column("actor", String(128), nullable=False),
    Column("error", Text, nullable=True),  # the traceback of a failed run
    UniqueConstraint("model", "seq", name="uq_train_runs_seq"),
    Index("ix_train_runs_model", "model", "started_at"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("run_id", String(36), nullable=False),
    Column("flavor", String(32), nullable=False),
    Column("task", String(16), nullable=False),  # binary | multiclass | regression
    Column("artifact", String(64), nullable=False),  # SHA-256 of the pickled model
    Column("holdout", String(64), nullable=False),  # SHA-256 of the holdout set (Parquet)
    Column("signature", Text, nullable=False),  # JSON {inputs, outputs}
    Column("spec", Text, nullable=False),  # JSON: features, label, split, gates, keys
    Column("metrics", Text, nullable=False, default="{}"),
    Column("profile", Text, nullable=False, default="{}"),  # reference profile of the features
    Column("description", Text, nullable=True),
    Column("tags", Text, nullable=False, default="{}"),
    Column("created_at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("generation", Integer, nullable=False),  # bumped on every move: compare-and-swap
    Column("updated_at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("action", String(16), nullable=False),  # promote | rollback
    Column("forced", Integer, nullable=False, default=0),
    Column("reason", Text, nullable=True),
    Column("validation_id", String(36), nullable=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Index("ix_alias_history", "model", "alias", "id"),
)

validations = Table(
    "validations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("champion", Integer, nullable=True),  # the champion version compared against
    Column("status", String(16), nullable=False),  # passed | failed | error
    Column("gates", String(64), nullable=False),  # hash of the declared gates
    Column("report", Text, nullable=False),  # JSON report
    Column("at", BigInteger, nullable=False),
    Column("seconds", BigInteger, nullable=False),  # microseconds
    Column("actor", String(128), nullable=False),
    Index("ix_validations_version", "model", "version", "at"),
)

# -- deployments: what serves each endpoint beside its champion (see catalog/deployments.py) ---

deployments = Table(
    "deployments",
    metadata,
    Column("endpoint", String(128), primary_key=True),  # the model name
    Column("canary_version", Integer, nullable=True),
    Column("canary_percent", Float, nullable=True),  # 0 to 100, of entities (sticky by key)
    Column("shadow_version", Integer, nullable=True),
    Column("generation", Integer, nullable=False),  # bumped on every change: compare-and-swap
    Column("updated_at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
)

deployment_history = Table(
    "deployment_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(128), nullable=False),
    Column("action", String(32), nullable=False),  # canary | shadow | promote_canary | abort ...
    Column("canary_version", Integer, nullable=True),  # the deployment after the change
    Column("canary_percent", Float, nullable=True),
    Column("shadow_version", Integer, nullable=True),
    Column("reason", Text, nullable=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Index("ix_deployment_history", "endpoint", "id"),
)

gate_results = Table(
    "gate_results",
    metadata,
    Column("validation_id", String(36), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(256), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # passed | failed | skipped | error
    Column("value", Text, nullable=True),
    Column("threshold", Text, nullable=True),
    Column("why", Text, nullable=False),
    Index("ix_gate_results_version", "model", "version"),
)

# -- alerts: per (monitor, check, column) whether it is firing, and every delivery attempted ----
# (see catalog/alerts.py and tarmac.monitoring.alerts)

alert_state = Table(
    "alert_state",
    metadata,
    Column("monitor", String(128), primary_key=True),
    Column("check_name", String(64), primary_key=True),
    Column("column_name", String(256), primary_key=True),  # "" for a check of no column
    Column("state", String(16), nullable=False),  # firing | resolved
    Column("incident", String(36), nullable=False),  # one id per firing episode
    Column("since", BigInteger, nullable=False),  # when the episode started
    Column("notice", Integer, nullable=False),  # notices sent in the episode (1: the first)
    Column("notice_key", String(64), nullable=False),  # the idempotency key of the last notice
    Column("notified_at", BigInteger, nullable=False),  # when the last notice was sent
    Column("pending", Integer, nullable=False),  # 1: a channel has not delivered that notice
    Column("verdict", String(32), nullable=False),  # the verdict that caused the last notice
    Column("updated_at", BigInteger, nullable=False),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor", String(128), nullable=False),
    Column("check_name", String(64), nullable=False),
    Column("column_name", String(256), nullable=False),
    Column("state", String(16), nullable=False),  # firing | resolved (what the notice said)
    Column("notice_key", String(64), nullable=False),  # the idempotency key sent
    Column("channel", String(256), nullable=False),  # webhook:<host or ${VAR}> | log
    Column("outcome", String(16), nullable=False),  # delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),  # the last HTTP status, if any
    Column("error", Text, nullable=True),  # the last error, truncated, secrets removed
    Column("seconds", Float, nullable=False),  # wall time of all attempts
    Column("at", BigInteger, nullable=False),
    Index("ix_alert_deliveries_monitor", "monitor", "id"),
    Index("ix_alert_deliveries_key", "notice_key"),
)

# -- monitors: what definitions.py declares, one row per evaluated window, and retrain loops ----
# (see catalog/monitors.py and tarmac.monitoring)

monitors = Table(
    "monitors",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("model", String(128), nullable=False),  # the served model (endpoint) it watches
    Column("spec", Text, nullable=False),  # JSON: the declaration as evaluated last
    Column("spec_hash", String(64), nullable=False),
    Column("every_seconds", BigInteger, nullable=False),
    Column("window_seconds", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

monitor_runs = Table(
    "monitor_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("monitor", String(128), nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("window_end", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # running | succeeded | failed
    Column("owner", String(128), nullable=False),  # host:pid of the process evaluating it
    Column("attempts", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("verdict", String(16), nullable=True),  # passed | failed | no data
    Column("checks", Integer, nullable=True),  # result rows written
    Column("failing", Integer, nullable=True),  # of them firing (drifted, failed, decayed ...)
    Column("undecided", Integer, nullable=True),  # not enough data, labels incomplete
    Column("summary", Text, nullable=True),  # JSON: the failing checks, counts, version
    Column("error", Text, nullable=True),
    UniqueConstraint("monitor", "window_end", name="uq_monitor_runs_window"),
    Index("ix_monitor_runs_monitor", "monitor", "window_end"),
)

retrain_loops = Table(
    "retrain_loops",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("monitor", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("trigger_run", String(36), nullable=False),  # the monitor run that started it
    Column("trigger", Text, nullable=False),  # JSON: the failing checks that started it
    Column("policy", Text, nullable=False),  # JSON: the retrain() policy
    # training | awaiting_approval | canary | promoted | failed | rejected | superseded
    Column("state", String(24), nullable=False),
    Column("champion", Integer, nullable=True),  # the champion when it started
    Column("version", Integer, nullable=True),  # the version it trained
    Column("canary_since", BigInteger, nullable=True),
    Column("reason", Text, nullable=True),
    Column("started_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_retrain_loops_model", "model", "state"),
)

# -- retention: how long each lake table keeps its rows (see catalog/retention.py) ---------------

retention_policies = Table(
    "retention_policies",
    metadata,
    Column("table_name", String(256), primary_key=True),
    Column("keep_seconds", BigInteger, nullable=False),
    Column("time_column", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("applied_at", BigInteger, nullable=True),  # when rows were last deleted by it
)

# -- identity: users with a role, and their API tokens (stored hashed; see catalog/identity.py) --

users = Table(
    "users",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("disabled_at", BigInteger, nullable=True),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),  # public: printed, listed, revoked by
    Column("user_name", String(128), nullable=False),
    Column("secret_sha256", String(64), nullable=False),  # the secret itself is never stored
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("actor", String(128), nullable=False),
    Index("ix_api_tokens_user", "user_name"),
)

# -- access: per-resource grants, protected aliases, alias changes awaiting approvals
#    (see catalog/access.py) --

grants = Table(
    "grants",
    metadata,
    Column("subject", String(160), primary_key=True),  # role:NAME or user:NAME
    Column("permission", String(32), primary_key=True),
    Column("resource", String(400), primary_key=True),  # table:X, model:X, alias:MODEL@ALIAS
    Column("created_at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
)

protected_aliases = Table(
    "protected_aliases",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("approvals", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
)

alias_requests = Table(
    "alias_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("action", String(16), nullable=False),  # promote | rollback
    Column("requested_by", String(128), nullable=False),
    Column("requested_at", BigInteger, nullable=False),
    Column("reason", Text, nullable=True),
    Column("approvers", Text, nullable=False),  # JSON list of user names
    Column("status", String(16), nullable=False),  # pending | applied | rejected
    Column("closed_at", BigInteger, nullable=True),
    Index("ix_alias_requests_open", "model", "alias", "status"),
)
