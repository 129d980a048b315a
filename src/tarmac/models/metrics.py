"""Model quality metrics by name, so gates, run records and reports all speak the same words.

scikit-learn does the maths; this module adds what a platform needs around it: one registry of
names with the tasks each applies to and its direction, binary labels of any kind (0/1, bool,
``"no"``/``"yes"``), metrics left out (with a reason) rather than NaN when the data cannot
define them, and the same metrics per slice of the holdout set.

Example::

    compute("binary", y_true, y_pred, scores)            # {"roc_auc": 0.87, "accuracy": ...}
    by_slice("binary", holdout["region"], y_true, y_pred, scores, names=["roc_auc"])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tarmac.errors import UsageError
from tarmac.features.definitions import suggest

TASKS = ("binary", "multiclass", "regression")
NULL_SLICE = "(null)"


class MetricUndefined(ValueError):
    """The metric has no value on this data (one class only, no scores...); says why."""


@dataclass(frozen=True)
class Metric:
    """A named metric: the tasks it applies to, its direction and how to compute it."""

    name: str
    tasks: frozenset[str]
    higher_is_better: bool
    needs_scores: bool  # computed from scores (probabilities), not from predicted labels
    fn: Callable[[np.ndarray, np.ndarray], float]  # (y_true, y_pred_or_scores) -> value


# --- binary labels of any kind -----------------------------------------------------------------

def _skm() -> Any:
    """scikit-learn's metrics, imported on first use: importing sklearn costs ~1 s, and every
    command that reads a project's gates imports this module without computing a metric."""
    from sklearn import metrics

    return metrics


def _classes(values: np.ndarray) -> np.ndarray:
    """The distinct labels, sorted."""
    distinct = np.asarray(pd.unique(pd.Series(np.asarray(values, dtype=object))), dtype=object)
    try:
        return np.sort(distinct)
    except TypeError as exc:
        raise MetricUndefined("the labels mix types that cannot be compared") from exc


def _positive_label(*arrays: np.ndarray) -> Any:
    """The positive class: 1/True for 0/1 or bool labels, else the larger of the two labels."""
    labels = _classes(np.concatenate([np.asarray(a, dtype=object).ravel() for a in arrays]))
    if all(isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating))
           and v in (0, 1) for v in labels):
        return 1
    if len(labels) == 2:
        return labels[1]
    if len(labels) == 1:
        raise MetricUndefined(f"only one label ({labels[0]!r}): cannot tell which is positive")
    shown = ", ".join(repr(v) for v in labels[:5])
    raise MetricUndefined(f"a binary metric got {len(labels)} labels ({shown})")


def _binarize(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays as 0/1 int arrays against one positive label."""
    pos = _positive_label(*arrays)
    out = []
    for a in arrays:
        a = np.asarray(a)
        a = a if a.dtype.kind in "biuf" else a.astype(object)
        out.append((a == pos).astype(np.int64))
    return out


def _both_classes(t: np.ndarray, what: str) -> None:
    if t.min() == t.max():
        raise MetricUndefined(f"{what} is not defined when the labels hold one class only")


# --- the metric functions ---------------------------------------------------------------------

def _roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    (t,) = _binarize(y)
    _both_classes(t, "ROC AUC")
    return float(_skm().roc_auc_score(t, s))


def _pr_auc(y: np.ndarray, s: np.ndarray) -> float:
    (t,) = _binarize(y)
    if t.sum() == 0:
        raise MetricUndefined("PR AUC is not defined when the labels hold no positive")
    return float(_skm().average_precision_score(t, s))


def _log_loss(y: np.ndarray, s: np.ndarray) -> float:
    if s.ndim == 1:
        (t,) = _binarize(y)
        return float(_skm().log_loss(t, s, labels=[0, 1]))
    k = s.shape[1]
    classes = _classes(y)
    if len(classes) == k:
        labels: Sequence[Any] = list(classes)
    elif all(isinstance(v, (int, np.integer)) and 0 <= v < k for v in classes):
        labels = list(range(k))  # labels are column positions; some classes absent here
    else:
        raise MetricUndefined(f"the scores have {k} columns but the labels hold "
                              f"{len(classes)} classes")
    return float(_skm().log_loss(y, s, labels=labels))


def _brier(y: np.ndarray, s: np.ndarray) -> float:
    (t,) = _binarize(y)
    return float(_skm().brier_score_loss(t, s, pos_label=1))


def _accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(_skm().accuracy_score(y, p))


def _precision(y: np.ndarray, p: np.ndarray) -> float:
    t, q = _binarize(y, p)
    if q.sum() == 0:
        raise MetricUndefined("precision is not defined when nothing is predicted positive")
    return float(_skm().precision_score(t, q))


def _recall(y: np.ndarray, p: np.ndarray) -> float:
    t, q = _binarize(y, p)
    if t.sum() == 0:
        raise MetricUndefined("recall is not defined when the labels hold no positive")
    return float(_skm().recall_score(t, q))


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    t, q = _binarize(y, p)
    if t.sum() == 0 and q.sum() == 0:
        raise MetricUndefined("F1 is not defined when neither labels nor predictions hold "
                              "a positive")
    return float(_skm().f1_score(t, q))


def _f1_macro(y: np.ndarray, p: np.ndarray) -> float:
    return float(_skm().f1_score(y, p, average="macro", zero_division=0.0))


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(_skm().root_mean_squared_error(y, p))


def _mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(_skm().mean_absolute_error(y, p))


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y, dtype=float)
    if len(y) < 2 or np.all(y == y[0]):
        raise MetricUndefined("R² is not defined when the true values are constant")
    return float(_skm().r2_score(y, p))


def _mape(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y, dtype=float)
    zeros = int(np.count_nonzero(y == 0))
    if zeros:
        raise MetricUndefined(f"MAPE divides by the true values and {zeros:,} of them are 0")
    return float(_skm().mean_absolute_percentage_error(y, p))


_B, _M, _R = "binary", "multiclass", "regression"


def _m(name: str, tasks: Sequence[str], higher: bool, scores: bool,
       fn: Callable[[np.ndarray, np.ndarray], float]) -> tuple[str, Metric]:
    return name, Metric(name, frozenset(tasks), higher, scores, fn)


#: every metric Tarmac knows, by name, in the order reports list them
METRICS: dict[str, Metric] = dict([
    _m("roc_auc", [_B], True, True, _roc_auc),
    _m("pr_auc", [_B], True, True, _pr_auc),
    _m("log_loss", [_B, _M], False, True, _log_loss),
    _m("brier", [_B], False, True, _brier),
    _m("accuracy", [_B, _M], True, False, _accuracy),
    _m("precision", [_B], True, False, _precision),
    _m("recall", [_B], True, False, _recall),
    _m("f1", [_B], True, False, _f1),
    _m("f1_macro", [_M], True, False, _f1_macro),
    _m("rmse", [_R], False, False, _rmse),
    _m("mae", [_R], False, False, _mae),
    _m("r2", [_R], True, False, _r2),
    _m("mape", [_R], False, False, _mape),
])


# --- public functions -------------------------------------------------------------------------

def did_you_mean(name: str, known: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` when a known name is close, else ``""``."""
    hint = suggest(name, known)
    return hint if hint.startswith("; did you mean") else ""


def _unknown(what: str, name: object, known: Sequence[str]) -> str:
    """``unknown metric 'roc_aux' (did you mean 'roc_auc'?); known metrics: ...``"""
    close = did_you_mean(str(name), known)
    return f"unknown {what} {name!r}" + (f" ({close[2:]})" if close else "")


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise UsageError(f"{_unknown('task', task, TASKS)}; tasks are: {', '.join(TASKS)}")
    return task


def get(name: str) -> Metric:
    """The metric called ``name``; an unknown name raises UsageError with the known names."""
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        raise UsageError(f"{_unknown('metric', name, list(METRICS))}; "
                         f"known metrics: {', '.join(METRICS)}") from None


def names(task: str | None = None) -> list[str]:
    """The metric names, all or those that apply to ``task``, in registry order."""
    if task is None:
        return list(METRICS)
    return _names_for(_check_task(task))


def _names_for(task: str) -> list[str]:
    return [n for n, m in METRICS.items() if task in m.tasks]


def applicable(name: str, task: str) -> Metric:
    """The metric, checked to apply to ``task``; otherwise UsageError naming its tasks."""
    metric = get(name)
    if _check_task(task) not in metric.tasks:
        raise UsageError(f"metric {name!r} applies to {' and '.join(sorted(metric.tasks))} "
                         f"models, not {task}; metrics for {task}: {', '.join(names(task))}")
    return metric


def _nulls(values: np.ndarray) -> int:
    return int(np.count_nonzero(pd.isna(values)))


def _prepared(task: str, y_true: Any, y_pred: Any, scores: Any
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    y = np.asarray(y_true).ravel()
    p = None if y_pred is None else np.asarray(y_pred).ravel()
    s = None if scores is None else np.asarray(scores)
    if p is not None and len(p) != len(y):
        raise UsageError(f"y_true has {len(y):,} rows but the predictions have {len(p):,}")
    if s is not None:
        if task == "binary" and s.ndim == 2 and s.shape[1] == 2:
            s = s[:, 1]  # (n, 2) probabilities: keep P(positive)
        if len(s) != len(y):
            raise UsageError(f"y_true has {len(y):,} rows but the scores have {len(s):,}")
    return y, p, s


def compute_one(task: str, name: str, y_true: Any, y_pred: Any, scores: Any) -> float:
    """One metric's value as a float. Raises UsageError when it does not apply to ``task`` and
    MetricUndefined, with the reason, when this data does not define it."""
    metric = applicable(name, task)
    y, p, s = _prepared(task, y_true, y_pred, scores)
    return _value(task, metric, y, p, s)


def _value(task: str, metric: Metric, y: np.ndarray, p: np.ndarray | None,
           s: np.ndarray | None) -> float:
    if len(y) == 0:
        raise MetricUndefined("there are no rows")
    if (n := _nulls(y)):
        raise MetricUndefined(f"{n:,} of {len(y):,} true labels are null")
    if metric.needs_scores:
        if s is None:
            raise MetricUndefined(f"{metric.name} needs scores (probabilities) and the model "
                                  "gives none")
        expected = 1 if task == "binary" else 2
        if s.ndim != expected:
            raise MetricUndefined(f"{metric.name} needs {expected}-D scores for a {task} model "
                                  f"(got {s.ndim}-D)")
        x = s
        if (n := _nulls(s)):
            raise MetricUndefined(f"the scores hold {n:,} null values")
    else:
        if p is None:
            raise MetricUndefined(f"{metric.name} needs predictions and there are none")
        x = p
        if (n := _nulls(p)):
            raise MetricUndefined(f"{n:,} of {len(p):,} predictions are null")
    from sklearn.exceptions import UndefinedMetricWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        try:
            value = metric.fn(y, x)
        except MetricUndefined:
            raise
        except (ValueError, TypeError, UndefinedMetricWarning) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise MetricUndefined(first) from exc
    if not np.isfinite(value):
        raise MetricUndefined(f"{metric.name} came out as {value}")
    return float(value)


def compute(task: str, y_true: Any, y_pred: Any, scores: Any,
            names: Sequence[str] | None = None) -> dict[str, float]:
    """Every metric that applies to ``task`` (or only ``names``), as plain floats. A metric this
    data does not define (one class only, no scores...) is left out rather than NaN."""
    _check_task(task)
    chosen = _names_for(task) if names is None else names
    wanted = [applicable(n, task) for n in chosen]
    y, p, s = _prepared(task, y_true, y_pred, scores)
    out: dict[str, float] = {}
    for metric in wanted:
        try:
            out[metric.name] = _value(task, metric, y, p, s)
        except MetricUndefined:
            continue
    return out


def slice_keys(slices: np.ndarray | pd.Series) -> np.ndarray:
    """Slice values as strings (what reports show), with nulls as ``"(null)"``."""
    values = pd.Series(np.asarray(slices, dtype=object)) if not isinstance(
        slices, pd.Series) else slices.reset_index(drop=True).astype(object)
    return values.where(values.notna(), NULL_SLICE).astype(str).to_numpy()


def by_slice(task: str, slices: np.ndarray | pd.Series, y_true: Any, y_pred: Any, scores: Any,
             names: Sequence[str] | None = None, min_rows: int = 30
             ) -> dict[str, dict[str, float]]:
    """Metrics per slice value: ``{"South": {"rows": 412, "roc_auc": 0.81}, ...}``. Slices under
    ``min_rows`` rows get only their row count: too small to judge."""
    _check_task(task)
    if names is not None:
        for n in names:
            applicable(n, task)
    y, p, s = _prepared(task, y_true, y_pred, scores)
    keys = slice_keys(slices)
    if len(keys) != len(y):
        raise UsageError(f"y_true has {len(y):,} rows but the slice column has {len(keys):,}")
    groups = pd.Series(np.arange(len(keys))).groupby(keys, sort=True).indices
    out: dict[str, dict[str, float]] = {}
    for key, idx in groups.items():
        row: dict[str, float] = {"rows": len(idx)}
        if len(idx) >= min_rows:
            row.update(compute(task, y[idx], None if p is None else p[idx],
                               None if s is None else s[idx], names))
        out[str(key)] = row
    return out
