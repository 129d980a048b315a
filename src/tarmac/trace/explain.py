"""Why one prediction came out as it did: per-feature contributions whose sum plus a base value
is the model's output for that row.

Three methods, tried in this order, each checked before it is returned:

``linear`` (exact)
    A linear model (``LogisticRegression``, ``LinearRegression``, ``Ridge``, ...), bare or as the
    last step of a ``Pipeline`` whose steps before it are a ``ColumnTransformer`` of
    ``OneHotEncoder`` / ``StandardScaler`` / ``SimpleImputer`` / passthrough (or a chain of
    such column-wise steps). Each transformed column ``k`` is mapped back to the input feature
    it came from; feature ``j`` gets ``sum(w_k * (z_k - mean(z_k)))`` over its columns, and the
    base value is ``w . mean(z) + b`` with means over the background (the version's holdout
    set). The sum is ``w . z + b``: the decision function. For a classifier that is the
    log-odds, so ``sigmoid(base + sum)`` is the score.
``tree`` (exact)
    LightGBM and XGBoost models: the booster's own ``pred_contrib`` (TreeSHAP), in raw score
    units (log-odds for a classifier).
``sampling`` (estimate, additive by construction)
    Any other model: permutation-sampling Shapley values (Strumbelj and Kononenko, 2014).
    Each of ``samples`` permutations (seeded: the same prediction always gets the same
    explanation) pairs a random background row with the prediction's row and switches the
    features from background to prediction one by one in the permutation's order; a feature's
    contribution is the mean change of the output when it is switched. Within a permutation
    the changes telescope to ``f(x) - f(background row)``, so the sum of contributions plus
    the base value (the mean output over the background rows drawn) equals ``f(x)`` exactly,
    whatever the number of samples; the individual values carry sampling error, reported per
    feature as a standard error. The output is the score (probability of the positive class)
    for a binary classifier, the value for a regressor.

Every method is checked: ``base + sum`` must reproduce the model's output for the row within
1e-6 (the linear method falls back to sampling otherwise, e.g. for a step it cannot map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SAMPLES = 64
"""Permutations drawn by the sampling method."""
BACKGROUND = 200
"""Background rows kept from the holdout set."""
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Contribution:
    """One input's share of the output: its value, status and contribution (``stderr`` only
    for the sampling method)."""

    feature: str
    value: Any
    contribution: float
    status: str | None = None
    stderr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "value": self.value, "contribution": self.contribution,
                "status": self.status, "stderr": self.stderr}


@dataclass(frozen=True)
class Explanation:
    """Per-feature contributions of one prediction: ``base + sum(contributions) == output``.

    ``scale`` says what ``output`` is: ``log-odds`` (``score == sigmoid(output)``),
    ``probability`` (``score == output``) or ``value`` (a regressor's prediction). ``score``
    is the model's output recomputed from the logged features, ``logged`` the score the log
    holds (they match unless the served features were not the logged ones).
    """

    method: str
    scale: str
    base: float
    output: float
    contributions: list[Contribution]
    score: float | None = None
    exact: bool = True
    samples: int | None = None
    background: int | None = None
    seed: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        """``base`` plus every contribution (equal to ``output``)."""
        return self.base + math.fsum(c.contribution for c in self.contributions)

    def ranked(self) -> list[Contribution]:
        """Contributions by absolute size, largest first."""
        return sorted(self.contributions, key=lambda c: -abs(c.contribution))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "scale": self.scale, "exact": self.exact,
                "base": self.base, "output": self.output, "score": self.score,
                "samples": self.samples, "background": self.background, "seed": self.seed,
                "contributions": [c.to_dict() for c in self.contributions],
                "notes": list(self.notes)}


class NotExplainable(Exception):
    """The model cannot be explained on this row (the message says why)."""


def explain(model: Any, frame: pd.DataFrame, *, background: pd.DataFrame | None = None,
            status: dict[str, str] | None = None, samples: int = SAMPLES, seed: int = 0,
            method: str = "auto") -> Explanation:
    """Explain ``model`` (a ``LoadedModel``) on the one-row ``frame`` of its inputs.

    ``background`` is a sample of rows like the training data (the version's holdout set):
    the linear method's means and the sampling method's reference rows. ``method`` is
    ``auto`` (linear, then tree, then sampling), or one of them by name.

    Example::

        m = p.models.get("risk", 1)
        e = explain(m, m.signature.frame([{"a": 0.3, "b": -1.0, "region": "north"}]),
                    background=p.models.holdout(m.record))
        e.base + sum(c.contribution for c in e.contributions)   # == e.output
    """
    if len(frame) != 1:
        raise ValueError(f"explain takes one row, got {len(frame)}")
    status = status or {}
    task = model.task
    if task not in ("binary", "regression"):
        raise NotExplainable(f"the model's task is {task}: contributions are computed for "
                             "binary classifiers and regressors")
    bg = _background(model, background, seed)
    notes: list[str] = []
    if method in ("auto", "linear"):
        try:
            return _checked(_linear(model, frame, bg, status), model, frame)
        except (NotExplainable, ValueError, TypeError) as exc:
            if method == "linear":
                raise
            notes.append(f"linear: {exc}")
    if method in ("auto", "tree"):
        try:
            return _checked(_tree(model, frame, status), model, frame)
        except (NotExplainable, ValueError, TypeError) as exc:
            if method == "tree":
                raise
            notes.append(f"tree: {exc}")
    if bg is None or len(bg) == 0:
        raise NotExplainable("the sampling method needs background rows (the version's "
                             "holdout set), and there are none")
    out = _sampling(model, frame, bg, status, samples=samples, seed=seed)
    return _checked(Explanation(**{**out.__dict__, "notes": notes + out.notes}), model, frame)


# -- shared -------------------------------------------------------------------------------------


def _output(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """The model's output per row: P(positive) for a binary classifier, else the value."""
    if model.task == "binary":
        scores = model.predict_scores(frame, empty="score")
        if scores is None:
            raise NotExplainable("the model gives no scores (no predict_proba)")
        return np.asarray(scores, dtype=np.float64)
    return np.asarray(model.predict(frame, empty="score"), dtype=np.float64)


def _background(model: Any, background: pd.DataFrame | None, seed: int) -> pd.DataFrame | None:
    if background is None:
        return None
    names = model.signature.input_names
    have = [n for n in names if n in background.columns]
    if len(have) != len(names):
        return None
    bg = background[names]
    if len(bg) > BACKGROUND:
        bg = bg.sample(BACKGROUND, random_state=seed)
    return model.signature.frame(bg.reset_index(drop=True))


def _row_values(frame: pd.DataFrame) -> dict[str, Any]:
    row = frame.iloc[0]
    out: dict[str, Any] = {}
    for name in frame.columns:
        v = row[name]
        if v is None or isinstance(v, float) and math.isnan(v):
            out[name] = None
        elif hasattr(v, "item"):
            out[name] = v.item()
        else:
            out[name] = v
    return out


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _checked(e: Explanation, model: Any, frame: pd.DataFrame) -> Explanation:
    """``e`` if ``base + sum`` reproduces the model's output on the row, else NotExplainable."""
    actual = float(_output(model, frame)[0])
    implied = _sigmoid(e.total) if e.scale == "log-odds" else e.total
    if not math.isclose(implied, actual, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
        raise NotExplainable(f"{e.method} contributions give {implied:.9g}, the model "
                             f"{actual:.9g}")
    return Explanation(**{**e.__dict__, "score": actual})


# -- linear -------------------------------------------------------------------------------------


def _linear(model: Any, frame: pd.DataFrame, bg: pd.DataFrame | None,
            status: dict[str, str]) -> Explanation:
    est = model.estimator
    steps = list(getattr(est, "steps", [])) or [(None, est)]
    final = steps[-1][1]
    coef = getattr(final, "coef_", None)
    intercept = getattr(final, "intercept_", None)
    module = type(final).__module__
    if coef is None or intercept is None or not module.startswith("sklearn.linear_model"):
        raise NotExplainable(f"{type(final).__name__} is not a linear model of sklearn")
    w = np.asarray(coef, dtype=np.float64)
    if model.task == "binary":
        if type(final).__name__ != "LogisticRegression" or w.ndim != 2 or w.shape[0] != 1:
            raise NotExplainable(f"{type(final).__name__}: only a binary LogisticRegression "
                                 "maps to log-odds")
        w = w[0]
    elif w.ndim != 1:
        raise NotExplainable("a regressor with several outputs")
    b = float(np.ravel(intercept)[0]) if np.ndim(intercept) else float(intercept)
    names = list(frame.columns)
    pre = steps[:-1]
    groups = _groups([s for _, s in pre], names)
    if len(groups) != len(w):
        raise NotExplainable(f"the steps before the model give {len(groups)} columns, the "
                             f"model has {len(w)} coefficients")
    z = _transform([s for _, s in pre], frame)[0]
    zbar = _transform([s for _, s in pre], bg).mean(axis=0) if bg is not None and len(bg) \
        else np.zeros_like(z)
    per_col = w * (z - zbar)
    idx = np.array([names.index(g) for g in groups])
    sums = np.bincount(idx, weights=per_col, minlength=len(names))
    base = float(w @ zbar + b)
    values = _row_values(frame)
    contribs = [Contribution(n, values[n], float(sums[i]), status.get(n))
                for i, n in enumerate(names)]
    scale = "log-odds" if model.task == "binary" else "value"
    notes = [] if bg is not None and len(bg) else [
        "no background rows: the base value is the intercept, contributions are w * z"]
    return Explanation("linear", scale, base, float(w @ z + b), contribs, notes=notes,
                       background=None if bg is None else len(bg))


def _dense(z: Any) -> np.ndarray:
    if hasattr(z, "toarray"):
        z = z.toarray()
    return np.asarray(z, dtype=np.float64)


def _transform(steps: list[Any], frame: pd.DataFrame) -> np.ndarray:
    out: Any = frame
    for step in steps:
        if step is None or step == "passthrough":
            continue
        out = step.transform(out)
    return _dense(out)


def _groups(steps: list[Any], names: list[str]) -> list[str]:
    """For each column the ``steps`` output, the input feature it comes from."""
    groups = list(names)
    for step in steps:
        groups = _step_groups(step, groups)
    return groups


def _step_groups(step: Any, cols: list[str]) -> list[str]:
    if step is None or step == "passthrough":
        return cols
    if step == "drop":
        return []
    kind = type(step).__name__
    if kind == "Pipeline":
        for _, sub in step.steps:
            cols = _step_groups(sub, cols)
        return cols
    if kind == "ColumnTransformer":
        out: list[str] = []
        for _name, trans, columns in step.transformers_:
            picked = _pick(columns, cols, getattr(step, "feature_names_in_", None))
            if trans == "drop" or not picked and trans != "passthrough":
                continue
            out += _step_groups(trans, picked)
        return out
    if kind == "OneHotEncoder":
        cats = step.categories_
        drops = getattr(step, "drop_idx_", None)
        out = []
        for i, col in enumerate(cols):
            n = len(cats[i]) - (1 if drops is not None and drops[i] is not None else 0)
            out += [col] * n
        return out
    if kind == "SimpleImputer":
        kept = cols
        stats = getattr(step, "statistics_", None)
        if stats is not None and not getattr(step, "keep_empty_features", False):
            kept = [c for c, s in zip(cols, stats, strict=True)
                    if not (isinstance(s, float) and math.isnan(s))]
        indicator = getattr(step, "indicator_", None)
        if indicator is not None:
            kept = kept + [cols[i] for i in indicator.features_]
        return kept
    if kind in ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler",
                "FunctionTransformer", "OrdinalEncoder"):
        return cols
    raise NotExplainable(f"cannot map the columns of a {kind} step back to the features")


def _pick(columns: Any, cols: list[str], fitted: Any) -> list[str]:
    """The features a ColumnTransformer entry takes (names, positions, a mask or a slice)."""
    if callable(columns):
        raise NotExplainable("a ColumnTransformer entry selects columns with a callable")
    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, slice):
        return cols[columns]
    seq = list(np.ravel(columns)) if not isinstance(columns, list) else columns
    if seq and all(isinstance(c, (bool, np.bool_)) for c in seq):
        return [c for c, keep in zip(cols, seq, strict=True) if keep]
    if seq and all(isinstance(c, (int, np.integer)) for c in seq):
        base = [str(f) for f in fitted] if fitted is not None else cols
        return [base[int(c)] for c in seq]
    return [str(c) for c in seq]


# -- trees --------------------------------------------------------------------------------------


def _tree(model: Any, frame: pd.DataFrame, status: dict[str, str]) -> Explanation:
    est = model.estimator
    steps = list(getattr(est, "steps", [])) or [(None, est)]
    final = steps[-1][1]
    module = type(final).__module__.split(".")[0]
    if module not in ("lightgbm", "xgboost"):
        raise NotExplainable(f"{type(final).__name__} is not a LightGBM or XGBoost model")
    names = list(frame.columns)
    pre = [s for _, s in steps[:-1]]
    X: Any = frame
    groups = names
    if pre:
        groups = _groups(pre, names)
        X = _transform(pre, frame)
    if module == "lightgbm":
        contrib = np.asarray(final.predict(X, pred_contrib=True), dtype=np.float64)
    else:
        import xgboost

        booster = final.get_booster() if hasattr(final, "get_booster") else final
        dm = xgboost.DMatrix(X, enable_categorical=True)
        contrib = np.asarray(booster.predict(dm, pred_contribs=True), dtype=np.float64)
    if contrib.ndim != 2 or contrib.shape[1] != len(groups) + 1:
        raise NotExplainable(f"pred_contrib gave shape {contrib.shape} for {len(groups)} "
                             "columns (a multiclass model?)")
    row = contrib[0]
    idx = np.array([names.index(g) for g in groups], dtype=np.int64)
    sums = np.bincount(idx, weights=row[:-1], minlength=len(names))
    values = _row_values(frame)
    scale = "log-odds" if model.task == "binary" else "value"
    contribs = [Contribution(n, values[n], float(sums[i]), status.get(n))
                for i, n in enumerate(names)]
    return Explanation("tree", scale, float(row[-1]), float(row.sum()), contribs)


# -- sampling -----------------------------------------------------------------------------------


def _sampling(model: Any, frame: pd.DataFrame, bg: pd.DataFrame, status: dict[str, str], *,
              samples: int, seed: int) -> Explanation:
    """Permutation-sampling Shapley values: every coalition of every permutation is scored in
    one batch of ``samples * (d + 1)`` rows."""
    names = list(frame.columns)
    d = len(names)
    rng = np.random.default_rng(seed)
    perms = np.array([rng.permutation(d) for _ in range(samples)])
    picks = rng.integers(0, len(bg), size=samples)
    # rows[m, s]: background row picks[m] with the first s features of perms[m] from x
    take_x = np.zeros((samples, d + 1, d), dtype=bool)
    for s in range(1, d + 1):
        take_x[np.arange(samples)[:, None], s, perms[:, :s]] = True
    base_rows = bg.iloc[np.repeat(picks, d + 1)].reset_index(drop=True)
    batch = base_rows.copy()
    flat = take_x.reshape(-1, d)
    for j, name in enumerate(names):
        col = batch[name].astype(object)
        col[flat[:, j]] = frame[name].iloc[0]
        batch[name] = col
    batch = model.signature.frame(batch)
    f = _output(model, batch).reshape(samples, d + 1)
    steps = np.diff(f, axis=1)  # steps[m, s]: the change when feature perms[m, s] switches
    phi = np.zeros((samples, d))
    phi[np.arange(samples)[:, None], perms] = steps
    mean = phi.mean(axis=0)
    stderr = phi.std(axis=0, ddof=1) / math.sqrt(samples) if samples > 1 else np.zeros(d)
    base = float(f[:, 0].mean())
    values = _row_values(frame)
    contribs = [Contribution(n, values[n], float(mean[i]), status.get(n), float(stderr[i]))
                for i, n in enumerate(names)]
    scale = "probability" if model.task == "binary" else "value"
    return Explanation("sampling", scale, base, float(f[0, d]), contribs, exact=False,
                       samples=samples, background=len(bg), seed=seed)
