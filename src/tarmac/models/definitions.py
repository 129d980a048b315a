"""Declaring a model next to its features: ``@model``, ``label``, ``time_split``, ``TrainingData``.

A model declaration says what it learns from (a feature service), what it predicts (a label
column of a lake table, with the time each label row observes), how the holdout set is cut
(by time, never at random: a model is judged on the future it did not see), which gates a
version must pass, and how it is fitted (the decorated function)::

    @model(name="churn", features="churn",
           label=label("labels", "churned", timestamp="observed_until"),
           split=time_split(test="last 20%", by="label_time"),
           gates=[metric("roc_auc") >= 0.75], params={"max_depth": 4},
           owner="growth-ml@kestrel.example",
           intended_use="rank customers for the retention team's outreach",
           limitations=["trained on customers with 90 days of history"])
    def train(data: TrainingData):
        return make_pipeline(...).fit(data.X, data.y)
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tarmac.errors import UsageError, echo
from tarmac.features.definitions import function_hash, spec_hash, suggest
from tarmac.humanize import parse_duration

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from tarmac.gates import Gate

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Label:
    """Where the labels live: ``column`` of lake ``table``, each row observed at ``timestamp``
    (features are taken as of that time), keyed by the feature service's join keys."""

    table: str
    column: str
    timestamp: str | None = None
    where: str | None = None

    def spec(self) -> dict[str, Any]:
        return {"table": self.table, "column": self.column, "timestamp": self.timestamp,
                "where": self.where}


def label(table: str, column: str, *, timestamp: str | None = None,
          where: str | None = None) -> Label:
    """The label of a model. ``timestamp`` may be left out when the table has one timestamp
    column; ``where`` filters the label rows (SQL)."""
    for what, value in (("table", table), ("column", column)):
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"label(): the {what} must be a non-empty name, not {value!r}")
    return Label(table, column, timestamp, where)


_PERCENT = re.compile(r"^last\s+(\d+(?:\.\d+)?)\s*%$")
_LAST = re.compile(r"^last\s+(\S+)$")


@dataclass(frozen=True)
class TimeSplit:
    """The holdout set is the latest rows by time: the last fraction of rows, or the rows in
    the last ``span`` before the newest one. Ties in time are broken by the entity keys, so the
    same data always splits the same way."""

    test: str
    by: str | None = None  # the time column to split on (default: the label's timestamp)
    fraction: float | None = None
    span: timedelta | None = None

    def spec(self) -> dict[str, Any]:
        return {"test": self.test, "by": self.by}

    def split(self, frame: pd.DataFrame, column: str,
              keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Row positions of the training rows and of the holdout rows."""
        import numpy as np

        times = frame[column]
        order = (frame[[column, *keys]].reset_index(drop=True)
                 .sort_values([column, *keys], kind="stable").index.to_numpy())
        if self.fraction is not None:
            cut = len(order) - math.ceil(len(order) * self.fraction)
        else:
            assert self.span is not None
            cut = int((times <= times.max() - self.span).sum())
        return np.sort(order[:cut]), np.sort(order[cut:])


def time_split(test: str = "last 20%", *, by: str | None = None) -> TimeSplit:
    """``test="last 20%"`` (the newest fifth of the rows) or ``test="last 30d"`` (the rows in
    the 30 days before the newest); ``by`` names the time column (default: the label's)."""
    text = test.strip().lower() if isinstance(test, str) else ""
    if m := _PERCENT.match(text):
        fraction = float(m.group(1)) / 100
        if not 0 < fraction < 1:
            raise UsageError(f"time_split(test={test!r}): the percentage must be between 0 and "
                             "100 (exclusive)")
        return TimeSplit(test, by, fraction=fraction)
    if m := _LAST.match(text):
        try:
            span = parse_duration(m.group(1))
        except ValueError:
            span = None
        if span is not None and span.total_seconds() > 0:
            return TimeSplit(test, by, span=span)
    raise UsageError(f"time_split(test={test!r}): expected 'last N%' (e.g. 'last 20%') or "
                     "'last DURATION' (e.g. 'last 30d', 'last 12h')")


@dataclass
class TrainingData:
    """What a training function receives: the training rows (the holdout is kept back)."""

    X: pd.DataFrame  # the features, in the model's input order
    y: pd.Series  # the label
    frame: pd.DataFrame  # keys, time, label and features
    features: list[str]
    label: str
    params: dict[str, Any]
    categorical: list[str] = field(default_factory=list)  # text and boolean features
    numeric: list[str] = field(default_factory=list)

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    @property
    def seed(self) -> int:
        return int(self.params.get("seed", 0))


@dataclass(frozen=True)
class ModelDefinition:
    """A declared model: what it learns from, how it is split, gated and fitted."""

    name: str
    function: Callable[[TrainingData], Any]
    features: str | tuple[str, ...]
    label: Label
    split: TimeSplit
    gates: tuple[Gate, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    slices: tuple[str, ...] = ()
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    # what a model card says of it (``tarmac models card``); None: not declared
    owner: str | None = None
    intended_use: str | None = None
    limitations: tuple[str, ...] | None = None

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "features": self.features, "label": self.label.spec(),
                "split": self.split.spec(), "gates": [g.spec() for g in self.gates],
                "params": dict(self.params), "slices": list(self.slices),
                "description": self.description, "tags": dict(self.tags),
                **self.card_spec(), "code_hash": self.code_hash()}

    def card_spec(self) -> dict[str, Any]:
        """What the model card shows as declared: owner, intended use, known limitations.
        Recorded with each version's spec, so an old version's card shows what was declared
        when it was trained."""
        return {"owner": self.owner, "intended_use": self.intended_use,
                "limitations": list(self.limitations) if self.limitations is not None
                else None}

    def gates_hash(self) -> str:
        return spec_hash({"gates": [g.spec() for g in self.gates]})[:16]

    def code_hash(self) -> str:
        """A hash of the training function's source (tells a reproduction the code changed)."""
        return function_hash(self.function)

    def resolve_params(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """The declared defaults with ``overrides``; an override the model does not declare is
        refused when the model declares any (a typo would otherwise train the default)."""
        out = dict(self.params)
        for key, value in (overrides or {}).items():
            if self.params and key not in self.params:
                raise UsageError(f"model '{self.name}' has no parameter '{key}'"
                                 + suggest(key, self.params),
                                 hint="declare it in @model(params={...}) to make it tunable")
            out[key] = value
        return out


def model(name: str, *, features: str | Sequence[str], label: Label,
          split: TimeSplit | None = None, gates: Sequence[Gate] = (),
          params: Mapping[str, Any] | None = None, slices: Sequence[str] = (),
          description: str = "", tags: Mapping[str, str] | None = None,
          owner: str | None = None, intended_use: str | None = None,
          limitations: Sequence[str] | None = None,
          ) -> Callable[[Callable[[TrainingData], Any]], ModelDefinition]:
    """Declare a model; decorate its training function (``TrainingData -> fitted model``).

    ``owner`` (who answers for it), ``intended_use`` (what it is for) and ``limitations``
    (a list of sentences: where it must not be trusted) are what its model card shows as
    declared; each trained version records them."""
    from tarmac.gates import Gate

    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(f"model name {name!r} is not valid: use letters, digits and '_', "
                         "starting with a letter (at most 64 characters)")
    if not isinstance(label, Label):
        raise UsageError(f"model '{name}': label must be label(table, column), not "
                         f"{type(label).__name__}", hint='label("labels", "churned")')
    for g in gates:
        if not isinstance(g, Gate):
            raise UsageError(f"model '{name}': {g!r} is not a gate",
                             hint="use metric(...) >= x, no_regression(...), latency(...), ...")
    feats = features if isinstance(features, str) else tuple(features)
    if not feats:
        raise UsageError(f"model '{name}': features must name a feature service or features")
    for what, value in (("owner", owner), ("intended_use", intended_use)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise UsageError(f"model '{name}': {what} must be non-empty text, not "
                             f"{echo(repr(value))}")
    limits = _limitations(name, limitations)

    def wrap(fn: Callable[[TrainingData], Any]) -> ModelDefinition:
        if not callable(fn):
            raise UsageError(f"@model('{name}') must decorate a function")
        return ModelDefinition(name, fn, feats, label, split or time_split(), tuple(gates),
                               dict(params or {}), tuple(slices), description or
                               (inspect.getdoc(fn) or "").split("\n")[0], dict(tags or {}),
                               owner.strip() if owner else None,
                               intended_use.strip() if intended_use else None, limits)

    return wrap


def _limitations(name: str, limitations: Sequence[str] | None) -> tuple[str, ...] | None:
    """The declared limitations as a tuple of sentences (None: not declared)."""
    if limitations is None:
        return None
    if isinstance(limitations, str):
        raise UsageError(f"model '{name}': limitations must be a list of sentences, not one "
                         "text", hint=f"limitations=[{echo(repr(limitations))}]")
    out = []
    for item in limitations:
        if not isinstance(item, str) or not item.strip():
            raise UsageError(f"model '{name}': each limitation must be non-empty text, not "
                             f"{echo(repr(item))}")
        out.append(item.strip())
    return tuple(out)


def parse_param(text: str) -> tuple[str, Any]:
    """``"max_depth=6"`` -> ("max_depth", 6): numbers, true/false and null become values."""
    import json

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--param {text!r}: expected NAME=VALUE (e.g. --param max_depth=6)")
    raw = raw.strip()
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


__all__ = ["Label", "ModelDefinition", "TimeSplit", "TrainingData", "label", "model",
           "parse_param", "time_split"]
