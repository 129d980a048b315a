"""``tarmac.trace.explain`` on fitted models directly (no project): every method's contributions
add up to the model's output, the exact ones agree with the model's own arithmetic, and the
sampling estimate agrees with the exact answer where one is known."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tarmac.catalog.models import ModelVersion
from tarmac.models import LoadedModel
from tarmac.models.flavors import Predictor
from tarmac.trace.explain import NotExplainable, explain

INPUTS = [("a", "float64"), ("b", "float64"), ("region", "string")]


def data(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(2, 3, size=n),
                      "region": rng.choice(["north", "south", "east"], size=n)})
    X.loc[rng.random(n) < 0.1, "b"] = np.nan
    value = 2 * X["a"] - 0.5 * X["b"].fillna(2) + X["region"].map(
        {"north": 1.0, "south": -1.0, "east": 0.0})
    return X, value.to_numpy(), (value + rng.normal(size=n) > 0).astype(int).to_numpy()


def loaded(estimator: Any, task: str, inputs: list[tuple[str, str]] = INPUTS) -> LoadedModel:
    record = ModelVersion(
        model="m", version=1, run_id="r", flavor="sklearn", task=task, artifact="x",
        holdout="y", signature={"inputs": [{"name": n, "type": t} for n, t in inputs],
                                "outputs": []}, spec={}, created_at=0, actor="t")
    return LoadedModel(record, Predictor(estimator, "sklearn", task), [])


def encode(drop: str | None = None) -> Any:
    return make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="most_frequent"),
                       OneHotEncoder(handle_unknown="ignore", drop=drop)), ["region"]),
        (make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()), ["a", "b"]))


def row(**values: Any) -> pd.DataFrame:
    return pd.DataFrame([{"a": 0.7, "b": np.nan, "region": "south", **values}])


def total(e: Any) -> float:
    return e.base + math.fsum(c.contribution for c in e.contributions)


def test_a_regression_pipeline_is_exact_through_indicators_and_dropped_categories() -> None:
    X, y, _ = data()
    est = make_pipeline(encode(drop="first"), LinearRegression()).fit(X, y)
    m = loaded(est, "regression")
    e = explain(m, row(), background=X)
    assert (e.method, e.scale, e.exact) == ("linear", "value", True)
    assert total(e) == pytest.approx(float(est.predict(row())[0]), rel=1e-12)
    got = {c.feature: c for c in e.contributions}
    assert got["b"].value is None  # missing: imputed, its indicator column is b's too
    assert got["region"].contribution != 0


def test_a_bare_ridge_and_a_logistic_regression_without_background() -> None:
    X, y, labels = data()
    numeric = X[["a"]].assign(b=X["b"].fillna(0))
    inputs = [("a", "float64"), ("b", "float64")]
    ridge = loaded(Ridge().fit(numeric, y), "regression", inputs)
    one = numeric.iloc[[3]]
    e = explain(ridge, one, background=numeric)
    assert total(e) == pytest.approx(float(ridge.estimator.predict(one)[0]), rel=1e-12)
    logit = loaded(LogisticRegression().fit(numeric, labels), "binary", inputs)
    e = explain(logit, one)  # no holdout: base is the intercept
    assert e.base == pytest.approx(float(logit.estimator.intercept_[0]))
    assert 1 / (1 + math.exp(-total(e))) == pytest.approx(
        float(logit.estimator.predict_proba(one)[0, 1]), rel=1e-12)
    assert e.notes and "no background" in e.notes[0]


def test_sampling_agrees_with_the_exact_answer_on_a_linear_model() -> None:
    X, y, _ = data()
    numeric = X[["a"]].assign(b=X["b"].fillna(0))
    inputs = [("a", "float64"), ("b", "float64")]
    m = loaded(LinearRegression().fit(numeric, y), "regression", inputs)
    one = pd.DataFrame([{"a": 1.5, "b": -2.0}])
    exact = explain(m, one, background=numeric)
    sampled = explain(m, one, background=numeric, method="sampling", samples=256)
    assert sampled.method == "sampling" and not sampled.exact
    assert total(sampled) == pytest.approx(exact.output, rel=1e-12)
    for e, s in zip(exact.contributions, sampled.contributions, strict=True):
        assert s.stderr is not None and abs(s.contribution - e.contribution) <= \
            4 * s.stderr + 1e-9


def test_a_forest_gets_sampling_and_a_multiclass_model_is_refused() -> None:
    X, y, _ = data(200)
    numeric = X[["a"]].assign(b=X["b"].fillna(0))
    inputs = [("a", "float64"), ("b", "float64")]
    forest = loaded(RandomForestRegressor(n_estimators=10, random_state=0).fit(numeric, y),
                    "regression", inputs)
    e = explain(forest, numeric.iloc[[0]], background=numeric)
    assert e.method == "sampling" and "linear" in e.notes[0]
    assert total(e) == pytest.approx(float(forest.estimator.predict(numeric.iloc[[0]])[0]),
                                     abs=1e-12)
    with pytest.raises(NotExplainable, match="background"):
        explain(forest, numeric.iloc[[0]])
    three = np.digitize(y[:200], [-1, 1])
    multi = loaded(LogisticRegression().fit(numeric, three), "multiclass", inputs)
    with pytest.raises(NotExplainable, match="multiclass"):
        explain(multi, numeric.iloc[[0]], background=numeric)


@pytest.mark.parametrize("package", ["lightgbm", "xgboost"])
def test_boosted_trees_are_exact_via_their_own_contributions(package: str) -> None:
    from conftest import require_module

    lib = require_module(package, f"the {package} explanation test",
                         {"lightgbm": "lightgbm", "xgboost": "xgboost-cpu"}[package])
    X, y, labels = data()
    numeric = X[["a"]].assign(b=X["b"])  # NaN left in: both handle it natively
    inputs = [("a", "float64"), ("b", "float64")]
    if package == "lightgbm":
        clf = lib.LGBMClassifier(n_estimators=20, verbose=-1).fit(numeric, labels)
        reg = lib.LGBMRegressor(n_estimators=20, verbose=-1).fit(numeric, y)
    else:
        clf = lib.XGBClassifier(n_estimators=20).fit(numeric, labels)
        reg = lib.XGBRegressor(n_estimators=20).fit(numeric, y)
    one = numeric.iloc[[int(np.flatnonzero(numeric["b"].isna())[0])]]
    e = explain(loaded(clf, "binary", inputs), one)
    assert (e.method, e.exact, e.scale) == ("tree", True, "log-odds")
    assert 1 / (1 + math.exp(-total(e))) == pytest.approx(float(clf.predict_proba(one)[0, 1]),
                                                          rel=1e-6)
    e = explain(loaded(reg, "regression", inputs), one)
    assert e.method == "tree" and total(e) == pytest.approx(float(reg.predict(one)[0]),
                                                            rel=1e-6)
