"""Scores and labels of a batch of rows from a loaded version, as JSON-ready Python values.

``score`` is P(positive class) for a binary classifier, the top class's probability for
multiclass, the value for a regression; ``label`` the class ``predict`` gives (None for a
regression). A row with no input value at all gets None for both (never a made-up score).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tarmac.models.registry import LoadedModel


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
    classes = model.predictor.classes or [0, 1]
    if task == "binary":
        inclusive = model.flavor == "python_function"
        out_s: list[Any] = []
        out_l: list[Any] = []
        for s in np.asarray(scores, dtype=float).tolist():
            if math.isnan(s):
                out_s.append(None)
                out_l.append(None)
            else:
                out_s.append(s)
                out_l.append(_scalar(classes[-1] if (s >= 0.5 if inclusive else s > 0.5)
                                     else classes[0]))
        return out_s, out_l
    proba = np.asarray(scores, dtype=float)
    out_s, out_l = [], []
    for p in proba:
        if np.isnan(p).all():
            out_s.append(None)
            out_l.append(None)
        else:
            k = int(np.nanargmax(p))
            out_s.append(float(p[k]))
            out_l.append(_scalar(classes[k]))
    return out_s, out_l


def _scalar(v: Any) -> Any:
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if type(v) is float and not math.isfinite(v):
        return None
    return v


__all__ = ["run_model"]
