"""The prediction log: appends, flushes into the predictions table, reconciliation, recovery of
dead processes' segments (torn records included), backpressure, a full disk, and its audit."""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tarmac import faults
from tarmac.errors import UsageError
from tarmac.ledger.chain import batch_digest
from tarmac.project import Project
from tarmac.serving.predlog import (
    LogBackpressure,
    LogUnavailable,
    PredictionLog,
    PredictionLogError,
    PredictionRecord,
    log_totals,
    new_prediction_id,
    read_predictions,
)
from tarmac.serving.predlog import _segment as seg


def rec(i: int = 0, *, endpoint: str = "churn", version: int = 3, role: str = "champion",
        when: datetime | None = None, **over: Any) -> PredictionRecord:
    now = when or datetime.now(UTC)
    fields: dict[str, Any] = dict(
        id=new_prediction_id(), request_id=f"r{i}", time=now, endpoint=endpoint,
        model=endpoint, version=version, role=role, features={"plan": "basic", "tenure": i},
        feature_times={"plan": now, "tenure": None},
        feature_status={"plan": "present", "tenure": "request"},
        request={"customer_id": i}, score=0.25, label=True, latency_ms=1.5)
    fields.update(over)
    return PredictionRecord(**fields)


def table_ids(p: Project) -> list[str]:
    return read_predictions(p).column("id").to_pylist()


@pytest.fixture
def log(project: Project) -> Any:
    lg = PredictionLog(project, flush_every_s=3600)  # flushed by the tests, not the thread
    lg.start()
    yield lg
    lg.close()


def test_append_flush_read_roundtrip(project: Project, log: PredictionLog) -> None:
    r = rec(7, score=None, label={"class": "churn"}, error="boom")
    log.append([r, rec(8)])
    assert log.stats().pending_rows == 2
    assert log.flush() == 2
    row = next(x for x in read_predictions(project).to_pylist() if x["id"] == r.id)
    assert row["endpoint"] == "churn" and row["model"] == "churn" and row["version"] == 3
    assert row["role"] == "champion" and row["shadow"] is False
    assert row["time"] == r.time and row["score"] is None and row["error"] == "boom"
    assert json.loads(row["label"]) == {"class": "churn"}
    assert json.loads(row["features"]) == {"plan": "basic", "tenure": 7}
    assert json.loads(row["feature_status"]) == {"plan": "present", "tenure": "request"}
    assert json.loads(row["feature_times"])["tenure"] is None
    assert json.loads(row["request"]) == {"customer_id": 7}


def test_counts_reconcile_and_sealed_segments_are_removed(project: Project) -> None:
    log = PredictionLog(project, flush_every_s=3600, segment_bytes=2000)
    log.start()
    for i in range(40):
        log.append([rec(i)])
        s = log.stats()
        assert s.appended == s.flushed + s.pending_rows
        if i == 19:
            log.flush()
    s = log.stats()
    assert (s.appended, s.flushed, s.pending_rows) == (40, 20, 20)
    assert s.segments > 1  # rotated by size
    totals = log_totals(project)
    assert (totals.logged, totals.pending, totals.families) == (20, 20, 1)
    assert totals.endpoints["churn"].logged == 20
    log.close()
    s = log.stats()
    assert (s.flushed, s.pending_rows, s.pending_bytes) == (40, 0, 0)
    assert list(log.directory.iterdir()) == []  # every segment flushed, lock file gone
    assert sorted(table_ids(project)) == sorted(set(table_ids(project)))


def test_shadow_rows_are_flagged(project: Project, log: PredictionLog) -> None:
    log.append([rec(1, role="shadow", version=5), rec(2, role="canary", version=4)])
    log.flush()
    rows = {r["role"]: r for r in read_predictions(project).to_pylist()}
    assert rows["shadow"]["shadow"] is True and rows["canary"]["shadow"] is False


def test_one_audit_record_per_flush_with_count_hash_and_lineage(project: Project,
                                                                log: PredictionLog) -> None:
    before = len(project.ledger.audit(limit=1000).items)
    batch = [rec(i, version=3 + i % 2) for i in range(50)]
    log.append(batch)
    log.flush()
    records = project.ledger.audit(limit=1000).items
    assert len(records) == before + 1
    details = json.loads(records[0].details)
    assert records[0].target == "predictions"
    assert details["count"] == 50
    assert details["ids_sha256"] == batch_digest([r.id for r in batch])[1]
    tree = project.ledger.lineage("predictions").to_dict()
    inputs = {(c["name"], c["version"]) for run in tree["children"] for c in run["children"]}
    assert inputs == {("model:churn", 3), ("model:churn", 4)}
    down = project.ledger.lineage("model:churn@3", direction="downstream").to_dict()
    assert down["children"][0]["children"][0]["name"] == "predictions"


def test_read_predictions_filters_and_orders(project: Project, log: PredictionLog) -> None:
    old = datetime.now(UTC) - timedelta(hours=3)
    log.append([rec(1, when=old), rec(2), rec(3, endpoint="fraud")])
    log.flush()
    assert read_predictions(project, "churn").num_rows == 2
    assert read_predictions(project, "churn", since="1h").column("request_id").to_pylist() == \
        ["r2"]
    assert read_predictions(project, since=timedelta(hours=4), limit=1).num_rows == 1
    assert read_predictions(project, since=old.isoformat()).num_rows == 3
    newest_first = read_predictions(project).column("time").to_pylist()
    assert newest_first == sorted(newest_first, reverse=True)
    assert read_predictions(project, "nobody").num_rows == 0


def test_read_predictions_before_any_flush_is_empty(project: Project) -> None:
    assert read_predictions(project).num_rows == 0
    assert "score" in read_predictions(project).column_names


@pytest.mark.parametrize("bad", [{"since": "yesterday-ish"}, {"since": 5}, {"limit": -1}])
def test_read_predictions_bad_arguments_name_the_problem(project: Project, bad: Any) -> None:
    with pytest.raises(UsageError, match="since|limit"):
        read_predictions(project, **bad)


@pytest.mark.parametrize("bad", [{"fsync": "sometimes"}, {"max_pending_bytes": 0},
                                 {"flush_every_s": -1}])
def test_bad_settings_are_refused(project: Project, bad: Any) -> None:
    with pytest.raises(UsageError, match=next(iter(bad))):
        PredictionLog(project, **bad)


def test_bad_role_is_refused_before_anything_is_written(log: PredictionLog) -> None:
    with pytest.raises(ValueError, match="role 'boss'"):
        log.append([rec(1), rec(2, role="boss")])
    assert log.stats().appended == 0


def test_backpressure_refuses_new_records_and_keeps_old_ones(project: Project) -> None:
    log = PredictionLog(project, flush_every_s=3600, max_pending_bytes=3000)
    log.start()
    kept = []
    with pytest.raises(LogBackpressure) as info:
        for i in range(100):
            r = rec(i)
            log.append([r])
            kept.append(r.id)
    assert isinstance(info.value, PredictionLogError) and info.value.retry_after >= 1
    assert 0 < len(kept) < 100 and not log.stats().writable
    log.flush()  # (the flusher thread, woken by the pressure, may have flushed some first)
    assert log.stats().flushed == len(kept)
    log.append([rec(999)])  # room again
    log.close()
    assert set(kept) < set(table_ids(project))


def test_disk_full_is_unavailable_and_loses_nothing(project: Project, log: PredictionLog) -> None:
    first = rec(1)
    log.append([first])

    def full(**_ctx: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with faults.inject("predlog.write", full), pytest.raises(LogUnavailable, match="disk is full"):
        log.append([rec(2)])
    s = log.stats()
    assert not s.writable and "disk is full" in (s.last_error or "")
    assert (s.appended, s.pending_rows) == (1, 1)
    second = rec(3)
    log.append([second])  # space again: a new segment
    assert log.stats().writable
    log.flush()
    assert sorted(table_ids(project)) == sorted([first.id, second.id])


def test_short_write_then_error_leaves_no_torn_frame(project: Project, log: PredictionLog) -> None:
    """A write cut off by a full disk: the partial frame is truncated away."""
    log.append([rec(1)])
    path = log._active.path  # type: ignore[union-attr]
    good = path.stat().st_size

    def partial(**ctx: Any) -> None:
        with open(ctx["path"], "ab") as fh:
            fh.write(b"\x10\x00\x00\x00partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with faults.inject("predlog.write", partial), pytest.raises(LogUnavailable):
        log.append([rec(2)])
    assert path.stat().st_size == good
    assert len(seg.read_frames(path).payloads) == 1 and not seg.read_frames(path).torn


def test_dead_process_segment_with_torn_record_is_recovered(project: Project) -> None:
    """A writer killed mid-write leaves a torn last frame: recovery commits the whole frames,
    cuts the torn one off, and deletes the segment."""
    directory = project.root / ".tarmac" / "predictions"
    directory.mkdir(parents=True)
    family = "deadhost-4242-0badcafe"
    (directory / f"{family}.lock").touch()
    from tarmac.serving.predlog._record import encode

    records = [rec(i) for i in range(5)]
    whole = b"".join(seg.frame(encode(r)) for r in records)
    torn = seg.frame(encode(rec(99)))[:-7]
    path = directory / seg.segment_name(family, 1)
    path.write_bytes(whole + torn)
    frames = seg.read_frames(path)
    assert frames.torn and len(frames.payloads) == 5 and frames.end == len(whole)
    log = PredictionLog(project, flush_every_s=3600)
    log.start()
    assert log.stats().recovered == 5
    assert sorted(table_ids(project)) == sorted(r.id for r in records)
    assert not path.exists() and not (directory / f"{family}.lock").exists()
    log.close()


def test_corrupt_crc_stops_reading(tmp_path: Path) -> None:
    data = bytearray(seg.frame(b"[1]") + seg.frame(b"[2]"))
    data[-1] ^= 0xFF
    frames = seg.parse(bytes(data))
    assert frames.payloads == [b"[1]"] and frames.torn


def test_a_tail_of_zeros_is_torn_not_empty_records() -> None:
    """After a power loss a file can end in zeros; a zero header has a matching CRC."""
    frames = seg.parse(seg.frame(b"[1]") + bytes(64))
    assert frames.payloads == [b"[1]"] and frames.torn


def test_already_committed_segment_is_not_committed_twice(project: Project) -> None:
    """Recovery of a segment whose records the table already holds (its writer died after the
    commit, before deleting it) adds nothing."""
    log = PredictionLog(project, flush_every_s=3600)
    log.start()
    records = [rec(i) for i in range(4)]
    log.append(records)
    log.flush()
    path = log._active.path  # type: ignore[union-attr]
    copy = path.read_bytes()
    log.close()
    path.write_bytes(copy)  # as if the writer died before deleting it
    (path.parent / f"{seg.segment_id(path).rsplit('-', 1)[0]}.lock").touch()
    again = PredictionLog(project, flush_every_s=3600)
    again.start()
    assert again.stats().recovered == 0 and not path.exists()
    again.close()
    assert sorted(table_ids(project)) == sorted(r.id for r in records)


def test_two_logs_on_one_project_keep_their_own_segments(project: Project) -> None:
    a = PredictionLog(project, flush_every_s=3600)
    b = PredictionLog(project, flush_every_s=3600)
    a.start()
    b.start()
    assert a.family != b.family
    ra, rb = [rec(i) for i in range(3)], [rec(i) for i in range(3)]
    a.append(ra)
    b.append(rb)
    assert b.recover() == 0  # a is alive: its segments are not b's to take
    assert log_totals(project).families == 2
    a.flush()
    b.flush()
    a.close()
    b.close()
    ids = table_ids(project)
    assert sorted(ids) == sorted(r.id for r in ra + rb) and len(set(ids)) == 6


def test_fsync_policies_all_log(project: Project) -> None:
    for policy in ("always", "never", "batch"):
        with PredictionLog(project, fsync=policy, flush_every_s=3600) as log:  # type: ignore[arg-type]
            log.append([rec(1)])
    assert len(table_ids(project)) == 3


def test_background_flusher_commits_without_being_asked(project: Project) -> None:
    import time

    log = PredictionLog(project, flush_every_s=0.05)
    log.start()
    log.append([rec(1)])
    deadline = time.monotonic() + 20
    while log.stats().pending_rows and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.stats().flushed == 1
    log.close()


def test_flush_failure_keeps_records_pending(project: Project, log: PredictionLog) -> None:
    def lake_down(**_ctx: Any) -> None:
        raise OSError("lake unreachable")

    log.append([rec(1)])
    with faults.inject("predlog.before_commit", lake_down), pytest.raises(OSError):
        log.flush()
    s = log.stats()
    assert s.pending_rows == 1 and "lake unreachable" in (s.last_error or "")
    assert log.flush() == 1 and log.stats().last_error is None


def test_closed_log_refuses_appends(project: Project) -> None:
    log = PredictionLog(project)
    log.start()
    log.close()
    with pytest.raises(LogUnavailable, match="closed"):
        log.append([rec(1)])


def test_prediction_ids_are_unique_and_time_ordered() -> None:
    ids = [new_prediction_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    assert ids[0][:12] <= ids[-1][:12]
    assert os.getpid()  # ids carry no pid: uniqueness comes from 74 random bits


def test_settings_come_from_the_project_file(tmp_path: Path) -> None:
    from conftest import make_project

    root = tmp_path / "cfg"
    p = make_project(root)
    p.close()
    with open(root / "tarmac.yaml", "a") as fh:
        fh.write("serving:\n  prediction_log: {fsync: always, max_pending_mb: 2, "
                 "flush_every_s: 0.5}\n")
    import tarmac

    with tarmac.open(root) as p:
        log = PredictionLog.from_config(p, flush_every_s=9)
        assert (log.fsync, log.max_pending_bytes, log.flush_every_s) == \
            ("always", 2 * 1024 * 1024, 9)


def test_bad_setting_in_the_project_file_names_the_key(tmp_path: Path) -> None:
    from tarmac.config import load_config
    from tarmac.errors import ConfigError

    (tmp_path / "tarmac.yaml").write_text(
        "name: t\nserving:\n  prediction_log: {fsync: sometimes}\n")
    with pytest.raises(ConfigError, match="serving.prediction_log.fsync"):
        load_config(tmp_path / "tarmac.yaml")


def test_odd_values_are_logged_not_refused(project: Project, log: PredictionLog) -> None:
    """numpy scalars, Decimals, sets and NaN in features or label become JSON, never an error
    on the response path."""
    from decimal import Decimal

    import numpy as np

    r = rec(1, features={"a": np.float32(1.5), "b": np.int64(2), "c": Decimal("3.25"),
                         "d": {1, 2}, "e": float("nan")}, label=np.bool_(True),
            score=float("nan"))
    log.append([r])
    log.flush()
    row = read_predictions(project).to_pylist()[0]
    assert json.loads(row["features"]) == {"a": 1.5, "b": 2, "c": "3.25", "d": [1, 2],
                                           "e": None}
    assert json.loads(row["label"]) is True and row["score"] is None


def test_a_record_of_an_unknown_format_is_named() -> None:
    from tarmac.serving.predlog._record import encode, split

    payload = bytearray(encode(rec(1)))
    payload[0] = 9
    with pytest.raises(ValueError, match="format 9"):
        split(bytes(payload))
