"""Metrics by name: the values are scikit-learn's, undefined ones are left out, typos are caught."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from tarmac.errors import UsageError
from tarmac.models import metrics

RNG = np.random.default_rng(7)
N = 400
Y_BIN = RNG.integers(0, 2, N)
S_BIN = np.clip(Y_BIN * 0.35 + RNG.random(N) * 0.65, 0.001, 0.999)
P_BIN = (S_BIN >= 0.5).astype(int)


def test_binary_metrics_match_sklearn() -> None:
    got = metrics.compute("binary", Y_BIN, P_BIN, S_BIN)
    expected = {
        "roc_auc": skm.roc_auc_score(Y_BIN, S_BIN),
        "pr_auc": skm.average_precision_score(Y_BIN, S_BIN),
        "log_loss": skm.log_loss(Y_BIN, S_BIN),
        "brier": skm.brier_score_loss(Y_BIN, S_BIN),
        "accuracy": skm.accuracy_score(Y_BIN, P_BIN),
        "precision": skm.precision_score(Y_BIN, P_BIN),
        "recall": skm.recall_score(Y_BIN, P_BIN),
        "f1": skm.f1_score(Y_BIN, P_BIN),
    }
    assert list(got) == list(expected)  # registry order, every binary metric
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name
        assert type(got[name]) is float, name


def test_string_and_bool_labels_take_the_larger_label_as_positive() -> None:
    y = np.where(Y_BIN == 1, "yes", "no")
    p = np.where(P_BIN == 1, "yes", "no")
    got = metrics.compute("binary", y, p, S_BIN, names=["precision", "recall", "roc_auc"])
    assert got["precision"] == pytest.approx(skm.precision_score(y, p, pos_label="yes"))
    assert got["recall"] == pytest.approx(skm.recall_score(y, p, pos_label="yes"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_BIN, S_BIN))
    as_bool = metrics.compute("binary", Y_BIN.astype(bool), P_BIN.astype(bool), S_BIN)
    assert as_bool == pytest.approx(metrics.compute("binary", Y_BIN, P_BIN, S_BIN))


def test_multiclass_metrics_match_sklearn() -> None:
    y = RNG.integers(0, 3, N)
    raw = RNG.random((N, 3)) + np.eye(3)[y] * 0.8
    scores = raw / raw.sum(axis=1, keepdims=True)
    pred = scores.argmax(axis=1)
    got = metrics.compute("multiclass", y, pred, scores)
    assert got == pytest.approx({
        "log_loss": skm.log_loss(y, scores),
        "accuracy": skm.accuracy_score(y, pred),
        "f1_macro": skm.f1_score(y, pred, average="macro"),
    })
    # a class absent from this holdout: integer labels are the score columns
    keep = y != 2
    part = metrics.compute("multiclass", y[keep], pred[keep], scores[keep], names=["log_loss"])
    assert part["log_loss"] == pytest.approx(skm.log_loss(y[keep], scores[keep], labels=[0, 1, 2]))


def test_regression_metrics_match_sklearn() -> None:
    y = RNG.normal(100, 20, N)
    p = y + RNG.normal(0, 5, N)
    got = metrics.compute("regression", y, p, None)
    assert got == pytest.approx({
        "rmse": skm.root_mean_squared_error(y, p),
        "mae": skm.mean_absolute_error(y, p),
        "r2": skm.r2_score(y, p),
        "mape": skm.mean_absolute_percentage_error(y, p),
    })


def test_undefined_metrics_are_left_out_not_nan() -> None:
    ones = np.ones(50, dtype=int)
    got = metrics.compute("binary", ones, ones, np.linspace(0.1, 0.9, 50))
    assert "roc_auc" not in got and "pr_auc" in got  # one class: AUC has no value
    assert got["accuracy"] == 1.0
    no_scores = metrics.compute("binary", Y_BIN, P_BIN, None)
    assert set(no_scores) == {"accuracy", "precision", "recall", "f1"}
    with pytest.raises(metrics.MetricUndefined, match="one class"):
        metrics.compute_one("binary", "roc_auc", ones, ones, np.linspace(0.1, 0.9, 50))
    with pytest.raises(metrics.MetricUndefined, match="needs scores"):
        metrics.compute_one("binary", "log_loss", Y_BIN, P_BIN, None)
    zeros = np.array([0.0, 1.0, 2.0])
    assert "mape" not in metrics.compute("regression", zeros, zeros + 1, None)
    assert "precision" not in metrics.compute("binary", Y_BIN, np.zeros(N, dtype=int), None)


def test_unknown_metric_suggests_the_close_name() -> None:
    with pytest.raises(UsageError) as err:
        metrics.get("roc_aux")
    assert str(err.value).startswith("unknown metric 'roc_aux' (did you mean 'roc_auc'?); "
                                     "known metrics: roc_auc, pr_auc, log_loss")
    with pytest.raises(UsageError, match="did you mean 'rmse'"):
        metrics.compute("regression", [1.0, 2.0], [1.0, 2.0], None, names=["rmsee"])


def test_metric_not_applicable_to_task_names_its_tasks() -> None:
    with pytest.raises(UsageError) as err:
        metrics.compute("binary", Y_BIN, P_BIN, S_BIN, names=["rmse"])
    assert "metric 'rmse' applies to regression models, not binary" in str(err.value)
    assert metrics.names("regression") == ["rmse", "mae", "r2", "mape"]
    assert metrics.names("multiclass") == ["log_loss", "accuracy", "f1_macro"]
    with pytest.raises(UsageError) as bad_task:
        metrics.names("binray")
    assert str(bad_task.value) == ("unknown task 'binray' (did you mean 'binary'?); tasks are: "
                                   "binary, multiclass, regression")


def test_by_slice_matches_compute_on_each_slice_and_skips_small_ones() -> None:
    region = np.array(["North"] * 200 + ["South"] * 150 + ["East"] * 40 + [None] * 10,
                      dtype=object)
    out = metrics.by_slice("binary", pd.Series(region, index=np.arange(N) + 1000), Y_BIN, P_BIN,
                           S_BIN, names=["roc_auc", "accuracy"], min_rows=30)
    assert list(out) == ["(null)", "East", "North", "South"]
    assert out["(null)"] == {"rows": 10}  # under min_rows: too small to judge
    for name in ("North", "South", "East"):
        mask = region == name
        assert out[name] == pytest.approx({
            "rows": int(mask.sum()),
            "roc_auc": skm.roc_auc_score(Y_BIN[mask], S_BIN[mask]),
            "accuracy": skm.accuracy_score(Y_BIN[mask], P_BIN[mask]),
        })
    with pytest.raises(UsageError, match="rows"):
        metrics.by_slice("binary", region[:10], Y_BIN, P_BIN, S_BIN)


def test_length_mismatch_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="y_true has 400 rows but the predictions have 3"):
        metrics.compute("binary", Y_BIN, [0, 1, 0], None)
