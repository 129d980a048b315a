"""Model performance over time from late labels: a metric per window of prediction time and
per slice, computed by ``tarmac.models.metrics`` (the functions the gates use, so a monitor and
a gate never disagree about what ``roc_auc`` is).

A window whose labels may still be arriving (its end plus ``complete_after`` is after now) or
whose share of labelled predictions is under ``min_coverage`` is marked ``complete = False``
with the reason: a drop there is missing labels, not decay.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tarmac.errors import UsageError
from tarmac.humanize import positive_duration
from tarmac.models import metrics as M
from tarmac.monitoring._labels import LabelJoin, as_delay

#: the slice name of all rows of a window
ALL = "(all)"

SCHEMA = pa.schema([
    ("window_start", pa.timestamp("us", tz="UTC")),
    ("window_end", pa.timestamp("us", tz="UTC")),
    ("slice", pa.string()),
    ("metric", pa.string()),
    ("value", pa.float64()),
    ("n_predictions", pa.int64()),
    ("n_labeled", pa.int64()),
    ("complete", pa.bool_()),
    ("reason", pa.string()),
])


def _window(window: timedelta | str) -> timedelta:
    return positive_duration(window, "window", "1d")


def _task(names: Sequence[str], actual: np.ndarray) -> str:
    tasks: set[str] = set()
    for n in names:
        tasks |= set(M.get(n).tasks)
    for task in ("binary", "regression", "multiclass"):
        if all(task in M.get(n).tasks for n in names):
            if task == "binary" and "multiclass" in tasks:  # accuracy, log_loss: count classes
                present = pd.unique(actual[~pd.isna(actual)])
                return "binary" if len(present) <= 2 else "multiclass"
            return task
    raise UsageError(f"metrics {', '.join(names)} do not share a task; compute the binary, "
                     "multiclass and regression metrics separately")


def _predicted(table: pa.Table, actual: np.ndarray) -> np.ndarray | None:
    """The model's answer (the log's ``predicted`` JSON text) as values like ``actual``."""
    if "predicted" not in table.column_names:
        return None
    import duckdb

    kind = pa.types
    atype = table.schema.field("actual").type
    cast = ("DOUBLE" if kind.is_floating(atype) else "BIGINT" if kind.is_integer(atype)
            else "BOOLEAN" if kind.is_boolean(atype) else "VARCHAR")
    text = table.select(["predicted"])
    expr = "json_extract_string(predicted, '$')"
    if cast == "BIGINT":
        expr = f"TRY_CAST(TRY_CAST({expr} AS DOUBLE) AS BIGINT)"
    elif cast != "VARCHAR":
        expr = f"TRY_CAST({expr} AS {cast})"
    con = duckdb.connect()
    try:
        con.register("t", text)
        values = con.sql(f"SELECT {expr} AS v FROM t").to_arrow_table().column(0)
    finally:
        con.close()
    return values.to_numpy(zero_copy_only=False)


def _slice_values(table: pa.Table, name: str) -> np.ndarray:
    """A slice column: the joined table's column, else the key in ``features``/``request``."""
    if name in table.column_names:
        return M.slice_keys(table.column(name).to_numpy(zero_copy_only=False))
    have = [c for c in ("features", "request") if c in table.column_names]
    if not have:
        raise UsageError(f"slice {name!r} is not a column of the joined predictions (columns: "
                         f"{', '.join(table.column_names)})"
                         f"{M.did_you_mean(name, table.column_names)}")
    import duckdb

    path = "'$.\"" + name.replace("'", "''").replace('"', '\\"') + "\"'"
    expr = ", ".join(f"json_extract_string({c}, {path})" for c in have)
    con = duckdb.connect()
    try:
        con.register("t", table.select(have))
        values = con.sql(f"SELECT coalesce({expr}, NULL) FROM t").to_arrow_table().column(0)
    finally:
        con.close()
    return M.slice_keys(values.to_numpy(zero_copy_only=False))


def performance(joined: LabelJoin | pa.Table, metrics: Sequence[str] = ("roc_auc", "pr_auc"),
                window: timedelta | str = "1d", slices: Sequence[str] | None = None,
                complete_after: timedelta | str | None = None, *, min_coverage: float = 0.5,
                min_rows: int = 30, task: str | None = None,
                now: datetime | None = None, origin: datetime | None = None) -> pa.Table:
    """Each metric per window of prediction time, overall and per slice value, from labelled
    predictions (``join_labels``'s result, or a table with ``time``, ``actual`` and ``score``
    and/or ``predicted``). One row per window, slice and metric: ``window_start``,
    ``window_end``, ``slice`` (``"(all)"`` or ``"region=South"``), ``metric``, ``value``,
    ``n_predictions``, ``n_labeled``, ``complete`` and ``reason``. Windows are ``window``
    wide from ``origin`` (default: the epoch): a monitor's window ``[start, end)`` is one
    window with ``origin=start``.

    A window whose every prediction is labelled is complete at once (no label is left to
    come). ``value`` is ``tarmac.models.metrics`` on the window's labelled rows (the gates' metrics,
    equal to scikit-learn's); it is null, with the reason, when the rows cannot define it (one
    class only, no scores) or there are fewer than ``min_rows`` labelled rows. A window is
    incomplete while labels may still arrive (its end plus ``complete_after``, by default the
    join's delay, is after ``now``) or while under ``min_coverage`` of its predictions are
    labelled. ``slices`` name columns of the joined table (``role``, ``version``) or keys of
    the predictions' ``features``/``request`` JSON.

    Example::

        j = p.monitoring.join_labels("predictions", "labels", label_column="churned",
                                     entity="customer_id", timestamp="observed_at")
        p.monitoring.performance(j, ["roc_auc"], window="1d", slices=["region"])
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise UsageError("performance needs at least one metric, e.g. ['roc_auc']")
    for n in names:
        M.get(n)
    width = _window(window)
    if isinstance(joined, LabelJoin):
        table = joined.table
        wait = joined.delay if complete_after is None else as_delay(complete_after)
    elif isinstance(joined, pa.Table):
        table = joined
        if complete_after is None:
            raise UsageError("complete_after is needed with a plain table: how long labels take "
                             "to arrive, such as '30d' (a LabelJoin carries its delay)")
        wait = as_delay(complete_after)
    else:
        raise UsageError(f"performance reads join_labels' result or an Arrow table, not a "
                         f"{type(joined).__name__}")
    for col in ("time", "actual"):
        if col not in table.column_names:
            raise UsageError(f"the joined table has no {col!r} column (columns: "
                             f"{', '.join(table.column_names)}); pass join_labels' result")
    if not 0.0 <= min_coverage <= 1.0:
        raise UsageError(f"min_coverage is a share between 0 and 1 (got {min_coverage!r})")
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)

    actual = table.column("actual").to_numpy(zero_copy_only=False)
    chosen = task or _task(names, actual)
    for n in names:
        M.applicable(n, chosen)
    scores = (table.column("score").to_numpy(zero_copy_only=False).astype(float)
              if "score" in table.column_names else None)
    predicted = _predicted(table, actual)
    times = table.column("time").cast(pa.timestamp("us", tz="UTC")).to_numpy(
        zero_copy_only=False).astype("datetime64[us]").astype(np.int64)
    width_us = int(width / timedelta(microseconds=1))
    origin_us = 0 if origin is None else int(
        (origin if origin.tzinfo else origin.replace(tzinfo=UTC)).timestamp() * 1_000_000)
    starts = origin_us + np.floor_divide(times - origin_us, width_us) * width_us
    labelled = ~pd.isna(actual)
    keys: list[tuple[str, np.ndarray]] = [(ALL, np.full(len(actual), "", dtype=object))]
    for s in slices or ():
        keys.append((s, _slice_values(table, s)))

    out: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    now_us = int((now - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    wait_us = int(wait / timedelta(microseconds=1))
    for name, values in keys:
        frame = pd.DataFrame({"w": starts, "s": values})
        groups: dict[Any, Any] = frame.groupby(["w", "s"], sort=True).indices
        for group_key, idx in sorted(groups.items()):
            start, value = int(group_key[0]), str(group_key[1])
            rows = np.asarray(idx)
            have = rows[labelled[rows]]
            n_pred, n_lab = len(rows), len(have)
            complete, why = True, ""
            if n_lab < n_pred and int(start) + width_us + wait_us > now_us:
                complete = False
                until = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
                    microseconds=int(start) + width_us + wait_us)
                why = f"labels may still arrive until {until:%Y-%m-%d %H:%M} UTC"
            elif n_lab < min_coverage * n_pred:
                complete = False
                why = f"only {n_lab:,} of {n_pred:,} predictions labelled (under " \
                      f"{min_coverage:.0%})"
            for metric in names:
                value_out: float | None = None
                reason = why
                if n_lab < min_rows:
                    note = f"{n_lab:,} labelled rows, under min_rows={min_rows}"
                    reason = f"{why}; {note}" if why else note
                else:
                    try:
                        value_out = M.compute_one(
                            chosen, metric, actual[have],
                            None if predicted is None else predicted[have],
                            None if scores is None else scores[have])
                    except M.MetricUndefined as exc:
                        reason = f"{why}; {metric} undefined: {exc}" if why else \
                            f"{metric} undefined: {exc}"
                out["window_start"].append(int(start))
                out["window_end"].append(int(start) + width_us)
                out["slice"].append(ALL if name == ALL else f"{name}={value}")
                out["metric"].append(metric)
                out["value"].append(value_out)
                out["n_predictions"].append(n_pred)
                out["n_labeled"].append(n_lab)
                out["complete"].append(complete)
                out["reason"].append(reason)
    return pa.table({f.name: pa.array(out[f.name], type=pa.int64()).cast(f.type)
                     if f.name.startswith("window") else pa.array(out[f.name], type=f.type)
                     for f in SCHEMA}, schema=SCHEMA)
