"""Scores and labels of a batch of rows from a loaded version, as JSON-ready Python values.

``score`` is P(positive class) for a binary classifier, the top class's probability for
multiclass, the value for a regression; ``label`` the class ``predict`` gives (None for a
regression). A row with no input value at all gets None for both (never a made-up score).

``Scorer`` is what the server keeps per loaded version. For a binary scikit-learn estimator
fitted on exactly the signature's numeric columns, it scores a float64 NumPy matrix built
straight from the row values instead of a pandas frame: the frame's construction, the
signature's per-column checks and scikit-learn's feature-name validation of a frame cost more
than a small model's inference. That lane is taken only when, at load time, it gives exactly
the same scores as the frame path on probe rows; anything else (pipelines, text inputs,
another library) scores through the frame, as ``LoadedModel.predict_scores`` does.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tarmac.models.registry import LoadedModel

log = logging.getLogger("tarmac.serving")
_NUMERIC = {"int64", "int32", "float64", "float32", "bool"}
Lane = Callable[[np.ndarray], np.ndarray]


class Scorer:
    """Scores and labels of rows of input values (dicts by input name) for one version."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.names = model.signature.input_names
        self.lane = numpy_lane(model)

    def __call__(self, values: Sequence[Mapping[str, Any]]) -> tuple[list[Any], list[Any]]:
        names = self.names
        if self.lane is not None:
            try:
                X = np.array([[v.get(k) for k in names] for v in values], dtype=np.float64)
            except (TypeError, ValueError):  # not numbers after all: the frame path says why
                X = None
            if X is not None:
                return _binary(self.model, self.lane(X))
        frame = pd.DataFrame([[v.get(k) for k in names] for v in values], columns=names)
        return run_model(self.model, frame)


def numpy_lane(model: LoadedModel) -> Lane | None:
    """The NumPy lane of ``model`` (see the module's doc), or None where it does not apply or
    does not give the frame path's scores exactly on probe rows."""
    obj = model.estimator
    inputs = model.signature.inputs
    if model.flavor != "sklearn" or model.task != "binary" or not inputs or \
            any(kind not in _NUMERIC for _, kind in inputs) or \
            not type(obj).__module__.startswith("sklearn.") or \
            hasattr(obj, "steps") or hasattr(obj, "transformers") or \
            not hasattr(obj, "predict_proba"):
        return None
    names = [n for n, _ in inputs]
    fitted = getattr(obj, "feature_names_in_", None)
    if fitted is None or [str(f) for f in fitted] != names:
        return None
    try:
        bare = copy.copy(obj)  # shares the fitted state; only the name check is dropped
        del bare.feature_names_in_
    except Exception:
        return None

    def lane(X: np.ndarray) -> np.ndarray:
        out = np.full(len(X), np.nan)
        keep = ~np.isnan(X).all(axis=1)  # rows with no input value: no made-up score
        if keep.all():
            proba = bare.predict_proba(X)
        elif keep.any():
            proba = bare.predict_proba(X[keep])
        else:
            return out
        proba = np.asarray(proba)
        if proba.ndim != 2 or proba.shape[0] != int(keep.sum()):
            raise ValueError(f"predict_proba returned shape {proba.shape} for "
                             f"{int(keep.sum())} rows")
        out[keep] = proba[:, 1]
        return out

    n = len(names)
    probe = np.array([[0.0] * n, [1.0] * n, [-1.5] * n,
                      [float(i % 3) - 0.5 for i in range(n)], [np.nan] * n])
    try:
        expected = model.predict_scores(pd.DataFrame(probe, columns=names), empty="null")
        same = expected is not None and np.array_equal(
            lane(probe), np.asarray(expected, dtype=float), equal_nan=True)
    except Exception:  # the model refuses the probe rows: the frame path it is
        return None
    if not same:
        log.info("%s v%s: scores of a NumPy matrix differ from a frame's; scoring frames",
                 model.name, model.version)
        return None
    return lane


def run_model(model: LoadedModel, frame: pd.DataFrame) -> tuple[list[Any], list[Any]]:
    """Scores and labels of each row (None for a row with no input value at all)."""
    task = model.task
    if task == "regression":
        values = model.predict(frame, empty="null")
        return [_scalar(v) for v in values], [None] * len(frame)
    scores = model.predict_scores(frame, empty="null")
    if scores is None:  # a classifier without probabilities
        labels = model.predict(frame, empty="null")
        return [None] * len(frame), [_scalar(v) for v in labels]
    if task == "binary":
        return _binary(model, scores)
    classes = model.predictor.classes or [0, 1]
    proba = np.asarray(scores, dtype=float)
    out_s: list[Any] = []
    out_l: list[Any] = []
    for p in proba:
        if np.isnan(p).all():
            out_s.append(None)
            out_l.append(None)
        else:
            k = int(np.nanargmax(p))
            out_s.append(float(p[k]))
            out_l.append(_scalar(classes[k]))
    return out_s, out_l


def _binary(model: LoadedModel, scores: Any) -> tuple[list[Any], list[Any]]:
    """Scores and labels from P(positive): the positive class above 0.5 (at 0.5 too for a
    python function, whose own rule that is); None for both where the score is NaN."""
    classes = model.predictor.classes or [0, 1]
    positive, negative = _scalar(classes[-1]), _scalar(classes[0])
    inclusive = model.flavor == "python_function"
    out_s: list[Any] = []
    out_l: list[Any] = []
    for s in np.asarray(scores, dtype=float).tolist():
        if math.isnan(s):
            out_s.append(None)
            out_l.append(None)
        else:
            out_s.append(s)
            out_l.append(positive if (s >= 0.5 if inclusive else s > 0.5) else negative)
    return out_s, out_l


def _scalar(v: Any) -> Any:
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if type(v) is float and not math.isfinite(v):
        return None
    return v


__all__ = ["Scorer", "numpy_lane", "run_model"]
