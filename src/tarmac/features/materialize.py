"""Materialization: the latest value of every entity, from the offline sources to the online store.

Per view, one ledger run: it reads the source (a lake table or SQL over the lake), keeps each
entity's latest row (by event time, ties by created time, the same order the training set uses),
and writes the records to the online store in batches. Every batch is atomic together with a
checkpoint saying which input versions it belongs to and which batch comes next, so:

* incremental by default: a table source whose old data files are all still there (appends)
  contributes only the files added since the last run; anything else (merge, overwrite, SQL
  sources) is recomputed, and unchanged inputs are skipped;
* a run that dies (the online store goes away, the process is killed) resumes at the next batch
  on rerun; replaying a batch is harmless because the store never lets an older value replace a
  newer one;
* lineage records which table versions fed which online state (``online.VIEW``), and the
  catalog keeps counts and the feature statistics the monitors use as reference.

Memory stays flat in the table's size: DuckDB streams the source and keeps one row per entity.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb

from tarmac.catalog import DatasetVersion, now_us
from tarmac.catalog import features as fcat
from tarmac.catalog.features import Materialization
from tarmac.errors import BackendUnavailableError, TarmacError, UsageError
from tarmac.features import registry
from tarmac.features.definitions import SQL_TYPES, Feature, FeatureView, SqlSource, suggest
from tarmac.features.keys import key_sql
from tarmac.features.offline import fine_times, q, tiebreak_columns, tiebreak_sql, time_sql
from tarmac.ingest.base import rebatch  # exact batch sizes: resuming counts on them
from tarmac.lake import literal_list
from tarmac.profile import TableProfile, profile

if TYPE_CHECKING:
    from tarmac.features.store import FeatureStore

BATCH = 10_000
#: the checkpoint's key for the newest event time (UTC microseconds) in the online store
NEWEST = "newest_us"


@dataclass(frozen=True)
class MaterializeProgress:
    view: str
    done: int  # records written so far
    total: int


@dataclass
class MaterializeResult:
    """What one view's materialization did."""

    view: str
    mode: str  # full | incremental | since | resumed | skipped
    rows: int = 0  # source rows read
    entities: int = 0  # online records written
    batches: int = 0
    seconds: float = 0.0
    inputs: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    stale: int = 0  # records written whose value is already older than the view's ttl
    ttl: str | None = None

    @property
    def warning(self) -> str | None:
        """Said when written values are already stale: served as null, a model scores nulls."""
        if not self.stale:
            return None
        share = self.stale / self.entities if self.entities else 1.0
        return (f"{self.stale:,} of {self.entities:,} values written to '{self.view}' "
                f"({share:.0%}) are already older than its ttl ({self.ttl}): they are served "
                "as null with status stale")

    @property
    def profile(self) -> TableProfile:
        """``stats`` typed: the ``tarmac.profile`` statistics of the written features."""
        return TableProfile.from_dict(self.stats)

    def to_dict(self) -> dict[str, Any]:
        return {"view": self.view, "mode": self.mode, "rows": self.rows,
                "entities": self.entities, "batches": self.batches,
                "seconds": round(self.seconds, 3), "inputs": self.inputs, "note": self.note,
                "stale": self.stale, "ttl": self.ttl, "warning": self.warning}


def materialize(store: FeatureStore, views: Sequence[str] | None = None, *,
                since: datetime | str | None = None, full: bool = False,
                progress: Callable[[MaterializeProgress], None] | None = None,
                ) -> list[MaterializeResult]:
    """Materialize the named views (all registered views by default), one run each."""
    with store.project.ledger.guard.acting("apply"):
        return _materialize(store, views, since=since, full=full, progress=progress)


def _materialize(store: FeatureStore, views: Sequence[str] | None, *,
                 since: datetime | str | None, full: bool,
                 progress: Callable[[MaterializeProgress], None] | None,
                 ) -> list[MaterializeResult]:
    defs = store.registered()
    names = list(views) if views else sorted(defs.views)
    if not names:
        raise UsageError("no feature views are registered", hint="run `tarmac apply` first")
    for name in names:
        if name not in defs.views:
            raise UsageError(f"no feature view named '{name}'" + suggest(name, defs.views))
    since_us = _since(since)
    online = store.online_store
    online.ping()
    return [_Materializer(store, defs.views[n], since_us, full, progress).run() for n in names]


def _since(since: datetime | str | None) -> int | None:
    if since is None:
        return None
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--since {since!r} is not an ISO date or time "
                             "(e.g. 2026-01-31 or 2026-01-31T12:00:00Z)") from None
    if since.tzinfo is None:
        raise UsageError(f"--since {since.isoformat()} has no time zone; add one (e.g. Z)")
    return int(since.timestamp() * 1_000_000)


class _Materializer:
    def __init__(self, store: FeatureStore, view: FeatureView, since_us: int | None, full: bool,
                 progress: Callable[[MaterializeProgress], None] | None) -> None:
        self.store = store
        self.project = store.project
        self.view = view
        self.since_us = since_us
        self.full = full
        self.progress = progress
        self.online = store.online_store
        self.schema = registry.source_schema(self.project, view)  # as the source yields it now

    # -- deciding what to do ------------------------------------------------------------------

    def _tables(self) -> list[str]:
        if isinstance(self.view.source, SqlSource):
            from tarmac.lake.sql import referenced_tables

            lake = self.project.lake
            known = set(lake.tables())
            return sorted(referenced_tables(lake, self.view.source.query) & known)
        return [self.view.source]

    def run(self) -> MaterializeResult:
        started = time.perf_counter()
        registry.check_source(self.view, self.schema)
        target = {t: self.project.lake.version(t) for t in self._tables()}
        saved = self.online.checkpoint(self.view.name)
        point = json.loads(saved) if saved else {}
        done = point.get("done")
        resume = (point.get("target") == target and point.get("next", 0) < point.get("batches", 0)
                  and not self.full and self.since_us is None)
        if not resume and done == target and not self.full and self.since_us is None:
            last = fcat.last_materialization(self.project.catalog, self.view.name)
            if last is not None and last.inputs == target:
                return MaterializeResult(self.view.name, "skipped", inputs=target,
                                         seconds=time.perf_counter() - started,
                                         note="the sources have not changed since the last run")
        if resume:
            mode, files = point["mode"], point.get("files")
        else:
            mode, files = self._mode(done, target)
        with self.project.ledger.run(f"features.materialize:{self.view.name}",
                                     params={"mode": mode, "since_us": self.since_us}) as run:
            result = self._materialize(run, mode, files, target, done,
                                       point.get("next", 0) if resume else 0,
                                       point.get(NEWEST))
        result.seconds = time.perf_counter() - started
        return result

    def _mode(self, done: dict[str, int] | None, target: dict[str, int],
              ) -> tuple[str, list[str] | None]:
        if self.since_us is not None:
            return "since", None
        if self.full or not done or isinstance(self.view.source, SqlSource):
            return "full", None
        table = self.view.source
        old = done.get(table)
        if old is None or old > target[table]:
            return "full", None
        if old == target[table]:
            return "incremental", []
        from deltalake import DeltaTable

        lake = self.project.lake
        before = set(DeltaTable(lake.uri(table), version=old,
                                storage_options=lake.storage_options).file_uris())
        now = lake.table(table).file_uris()
        if not before <= set(now) or not lake.is_local:
            return "full", None  # rows were rewritten or removed: recompute
        return "incremental", [f for f in now if f not in before]

    # -- doing it -----------------------------------------------------------------------------

    def _query(self, files: list[str] | None) -> str:
        """SQL giving each entity's latest row (key, event time in us, features) and ``__n``,
        how many source rows the entity had: one pass over the source, counts included."""
        v = self.view
        if files is not None:
            listing = literal_list(files)
            relation = f"read_parquet([{listing}], union_by_name = true)"
        elif isinstance(v.source, SqlSource):
            relation = f"({v.source.query})"
        else:
            relation = q(v.source)
        fine = fine_times(self.schema, v.timestamp, v.created)
        event = time_sql(q(v.timestamp), fine)
        created = time_sql(q(v.created), fine) if v.created else "NULL::TIMESTAMPTZ"
        where = " AND ".join(f"{q(c)} IS NOT NULL" for c in [*v.join_keys, v.timestamp])
        if self.since_us is not None:
            where += f" AND {event} >= make_timestamptz({self.since_us}::BIGINT)"
        # each entity's latest row in one hash aggregation (memory grows with the entities,
        # not the rows), ordered exactly as the training set orders: event, created, tiebreak
        row = ", ".join([f"__ev := {event}"] + [
            f"{q(f.name)} := CAST({q(f.name)} AS {SQL_TYPES[f.dtype]})" for f in v.features])
        order = (f"struct_pack(t := {event}, c := coalesce({created}, "
                 f"'-infinity'::TIMESTAMPTZ), h := {tiebreak_sql(tiebreak_columns(v))})")
        return ("SELECT __key, epoch_us(__row.__ev) AS __ev, __n, "
                + ", ".join(f"__row.{q(f.name)} AS {q(f.name)}" for f in v.features)
                + f" FROM (SELECT {key_sql(v.join_keys)} AS __key, count(*) AS __n, "
                f"arg_max(struct_pack({row}), {order}) AS __row FROM {relation} WHERE {where} "
                "GROUP BY __key)")

    def _materialize(self, run: Any, mode: str, files: list[str] | None,
                     target: dict[str, int], done: dict[str, int] | None,
                     start: int, prior_newest: int | None) -> MaterializeResult:
        from tarmac.lake.sql import connect

        view = self.view
        result = MaterializeResult(view.name, "resumed" if start else mode, inputs=target,
                                   ttl=view.ttl_text)
        if files == []:  # nothing new to read: record the versions as done
            self._finish(run, result, {"done": target, NEWEST: prior_newest}, mode)
            return result
        latest = self._query(files)
        if files is not None:
            con = connect(self.project.lake, "SELECT 1")
            for table, version in target.items():
                run.add_input(table, version)
        else:
            con = connect(self.project.lake, latest)
        started_at = now_us()
        try:
            con.execute(f"CREATE TEMP TABLE __latest AS {latest}")
            ttl_s = view.ttl_seconds  # values already older than the ttl, counted as written
            cutoff = started_at - int(ttl_s * 1_000_000) if ttl_s is not None else None
            stale = f"count(*) FILTER (WHERE __ev < {cutoff})" if cutoff is not None else "0"
            total, rows, result.stale, newest = con.execute(
                f"SELECT count(*), coalesce(sum(__n), 0), {stale}, max(__ev) "
                "FROM __latest").fetchall()[0]
            # the newest event time online once this run is done (the store never regresses,
            # so the newer of this run's and the last run's): what freshness monitors read
            newest_us = max((v for v in (prior_newest, newest) if v is not None), default=None)
            result.rows = int(rows)
            batches = (total + BATCH - 1) // BATCH
            result.batches = batches
            payload = "to_json(struct_pack(" + ", ".join(
                f"{q(f.name)} := {q(f.name)}" for f in view.features) + "))"
            reader = con.sql(f"SELECT __key, __ev, CAST({payload} AS BLOB) AS __payload "
                             f"FROM __latest ORDER BY __key").to_arrow_reader(BATCH)
            for index, batch in enumerate(rebatch(reader, BATCH)):
                if index >= start:
                    last = index + 1 == batches
                    point = {"target": target, "mode": mode, "files": files, "next": index + 1,
                             "batches": batches, "done": target if last else done,
                             "run_id": run.id,
                             NEWEST: newest_us if last else prior_newest}
                    try:
                        self.online.write_batch(
                            view.name, batch.column(0).to_pylist(),
                            batch.column(1).to_pylist(), batch.column(2).to_pylist(),
                            checkpoint=json.dumps(point))
                    except BackendUnavailableError as exc:
                        raise BackendUnavailableError(
                            f"materializing '{view.name}' stopped at batch {index + 1} of "
                            f"{batches}: {exc.message}; batches 1 to {index} are applied and "
                            "checkpointed, nothing of the failed batch is",
                            hint="rerun `tarmac features materialize` once the online store is "
                                 "back: it resumes at the failed batch") from None
                    if self.progress:
                        self.progress(MaterializeProgress(view.name, min(
                            (index + 1) * BATCH, total), total))
            result.entities = total
            result.stats = feature_stats(con, "__latest", view.features)
        except TarmacError:
            raise
        except duckdb.Error as exc:
            raise UsageError(f"materializing '{view.name}' failed reading its source: "
                             f"{str(exc).splitlines()[0]}") from None
        finally:
            con.close()
        self._finish(run, result, None, mode, started_at)
        return result

    def _finish(self, run: Any, result: MaterializeResult, point: dict[str, Any] | None,
                mode: str, started_at: int | None = None) -> None:
        if point is not None:  # no batch carried the final checkpoint: write it alone
            self.online.write_batch(self.view.name, [], [], [], checkpoint=json.dumps(point))
        done = fcat.count_materializations(self.project.catalog, self.view.name, "succeeded")
        output = DatasetVersion(f"online.{self.view.name}", done + 1)
        record = Materialization(
            id=f"{run.id[:24]}:{self.view.name}"[:64], view=self.view.name, run_id=run.id,
            mode=result.mode, status="succeeded", started_at=started_at or now_us(),
            ended_at=now_us(), inputs=result.inputs, rows=result.rows, entities=result.entities,
            stats=result.stats)
        self.project.ledger.commit(
            "features.materialize", f"online.{self.view.name}",
            {"mode": result.mode, "rows": result.rows, "entities": result.entities,
             "inputs": result.inputs},
            change=lambda conn: fcat.insert_materialization(conn, record), run=run,
            output=output)


def feature_stats(con: duckdb.DuckDBPyConnection, relation: str,
                  features: Iterable[Feature]) -> dict[str, Any]:
    """Per feature, its ``tarmac.profile`` column statistics in their stored JSON form: count,
    nulls, distinct, and mean/std/min/max/quantiles/histogram (numbers) or the top categories
    (text, booleans). The monitors compare live traffic against these."""
    features = list(features)
    if not features:
        return {}
    cols = ", ".join(q(f.name) for f in features)
    return profile(f"SELECT {cols} FROM {relation}", con=con,
                   types={f.name: f.dtype for f in features}).to_dict()


__all__ = ["MaterializeProgress", "MaterializeResult", "feature_stats", "materialize"]
