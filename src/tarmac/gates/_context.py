"""What gates run against: the predictor and signature protocols, the champion, and the
``GateContext`` that computes predictions and metrics once per validation and shares them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tarmac.errors import UsageError
from tarmac.models import metrics as M

# --- what gates run against ---------------------------------------------------------------------


class Predictor(Protocol):
    """A loaded model, whatever its flavor: labels or values, and scores when it has them."""

    flavor: str
    task: str  # "binary" | "multiclass" | "regression"

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """1-D labels (classifiers) or values (regressors)."""
        ...

    def scores(self, frame: pd.DataFrame) -> np.ndarray | None:
        """Binary: 1-D P(positive); multiclass: 2-D (rows, classes); regression: None."""
        ...


class SignatureLike(Protocol):
    """A version's request and response columns with their types."""

    @property
    def inputs(self) -> list[tuple[str, str]]:  # (column, type), e.g. ("tenure_days", "int64")
        ...

    @property
    def outputs(self) -> list[tuple[str, str]]:  # e.g. ("prediction", "int64"), ("score", ...)
        ...


@dataclass
class Champion:
    """The version currently serving: what a new version is compared with."""

    version: int
    predictor: Predictor
    signature: SignatureLike


@dataclass
class GateContext:
    """One version's holdout set and model, with predictions and metrics computed lazily once
    per validation and shared by every gate (and the same for the champion)."""

    model: str
    version: int
    predictor: Predictor
    holdout: pd.DataFrame
    features: list[str]
    label: str
    signature: SignatureLike
    champion: Champion | None = None
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _cached(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` once; a failure is remembered too, so a broken model fails fast."""
        if key not in self._cache:
            try:
                self._cache[key] = (True, make())
            except Exception as exc:
                self._cache[key] = (False, exc)
        ok, value = self._cache[key]
        if not ok:
            raise value
        return value

    @property
    def task(self) -> str:
        """The model's task: binary, multiclass or regression."""
        return self.predictor.task

    def _frame(self, columns: Sequence[str], whose: str) -> pd.DataFrame:
        missing = [c for c in columns if c not in self.holdout.columns]
        if missing:
            raise UsageError(f"{whose} needs columns the holdout set does not have: "
                             f"{', '.join(missing)} (holdout columns: {_columns(self.holdout)})")
        return self.holdout[list(columns)]

    def X(self) -> pd.DataFrame:  # noqa: N802 - the usual name for model inputs
        """The holdout's feature columns, in the order the predictor takes them."""
        return self._cached("X", lambda: self._frame(self.features, f"{self.model} "
                                                                    f"v{self.version}"))

    def y(self) -> np.ndarray:
        """The holdout's true labels or values."""
        def make() -> np.ndarray:
            if self.label not in self.holdout.columns:
                raise UsageError(f"label column {self.label!r} is not in the holdout set "
                                 f"(columns: {_columns(self.holdout)})"
                                 f"{M.did_you_mean(self.label, list(self.holdout.columns))}")
            return self.holdout[self.label].to_numpy()
        return self._cached("y", make)

    def predictions(self) -> np.ndarray:
        """This version's predictions on the holdout set."""
        return self._cached("predictions", lambda: _predict(self.predictor, self.X(),
                                                            f"v{self.version}"))

    def scores(self) -> np.ndarray | None:
        """This version's scores on the holdout set (None when the model has none)."""
        return self._cached("scores", lambda: _scores(self.predictor, self.X(),
                                                      f"v{self.version}"))

    def metrics(self) -> dict[str, float]:
        """Every metric of the task that this holdout defines, for this version."""
        return self._cached("metrics", lambda: M.compute(
            self.task, self.y(), self.predictions(), self.scores()))

    def _champion(self) -> Champion:
        if self.champion is None:
            raise UsageError("there is no champion to compare with")
        return self.champion

    def champion_X(self) -> pd.DataFrame:  # noqa: N802
        """The holdout's columns the champion takes (its signature's inputs)."""
        def make() -> pd.DataFrame:
            champ = self._champion()
            columns = [c for c, _ in champ.signature.inputs] or list(self.features)
            return self._frame(columns, f"champion v{champ.version}")
        return self._cached("champion_X", make)

    def champion_predictions(self) -> np.ndarray:
        """The champion's predictions on this version's holdout set."""
        return self._cached("champion_predictions", lambda: _predict(
            self._champion().predictor, self.champion_X(), f"champion v{self._champion().version}"))

    def champion_scores(self) -> np.ndarray | None:
        """The champion's scores on this version's holdout set."""
        return self._cached("champion_scores", lambda: _scores(
            self._champion().predictor, self.champion_X(), f"champion v{self._champion().version}"))

    def champion_metrics(self) -> dict[str, float]:
        """The champion's metrics on this version's holdout set."""
        return self._cached("champion_metrics", lambda: M.compute(
            self.task, self.y(), self.champion_predictions(), self.champion_scores()))


def _columns(frame: pd.DataFrame, limit: int = 20) -> str:
    names = [str(c) for c in frame.columns]
    return ", ".join(names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def _predict(predictor: Predictor, frame: pd.DataFrame, whose: str) -> np.ndarray:
    out = np.asarray(predictor.predict(frame))
    if out.ndim != 1 or len(out) != len(frame):
        raise UsageError(f"{whose}'s predict returned shape {out.shape} for {len(frame):,} rows; "
                         "expected one value per row")
    return out


def _scores(predictor: Predictor, frame: pd.DataFrame, whose: str) -> np.ndarray | None:
    out = predictor.scores(frame)
    if out is None:
        return None
    arr = np.asarray(out)
    if arr.ndim not in (1, 2) or len(arr) != len(frame):
        raise UsageError(f"{whose}'s scores returned shape {arr.shape} for {len(frame):,} rows; "
                         "expected one score (or one row of class scores) per row")
    return arr


# --- shared helpers ------------------------------------------------------------------------------
