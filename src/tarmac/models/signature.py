"""A model version's serving contract: the input columns it takes (name, type) and what it
returns. Requests are checked against it, and a new version must keep the champion's contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tarmac.errors import UsageError
from tarmac.features.definitions import type_of
from tarmac.features.store import OnlineFeatures


@dataclass(frozen=True)
class Signature:
    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str]]

    @property
    def input_names(self) -> list[str]:
        return [n for n, _ in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [{"name": n, "type": t} for n, t in self.inputs],
                "outputs": [{"name": n, "type": t} for n, t in self.outputs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        return cls([(i["name"], i["type"]) for i in d.get("inputs", [])],
                   [(o["name"], o["type"]) for o in d.get("outputs", [])])

    def frame(self, data: pd.DataFrame | pa.Table | list[dict[str, Any]] | OnlineFeatures
              ) -> pd.DataFrame:
        """The input columns of ``data`` in signature order, checked against the declared
        types (a missing column or a value of the wrong kind is a UsageError naming the column
        and the row); numbers held as Python objects become numeric columns."""
        if isinstance(data, OnlineFeatures):
            data = pd.DataFrame(data.rows, columns=data.features)
        elif isinstance(data, pa.Table):
            data = data.to_pandas()
        elif isinstance(data, list):
            data = pd.DataFrame(data)
        if not isinstance(data, pd.DataFrame):
            raise UsageError(f"predict() takes a pandas DataFrame, an Arrow table, a list of "
                             f"dicts or online features, not {type(data).__name__}")
        missing = [n for n in self.input_names if n not in data.columns]
        if missing:
            raise UsageError(f"the frame lacks input column(s) {', '.join(missing)} "
                             f"(the model takes {', '.join(self.input_names)})")
        out = data[self.input_names]
        for name, kind in self.inputs:
            col = out[name]
            if kind not in NUMERIC or col.dtype != object and not pd.api.types.is_string_dtype(
                    col.dtype):
                continue  # numeric dtypes are fine; strings and timestamps are not checked
            inferred = pd.api.types.infer_dtype(col, skipna=True)
            if inferred not in ALLOWED[kind]:
                _wrong_type(name, kind, col)
            out = out.assign(**{name: pd.to_numeric(col) if kind != "bool" else col})
        return out

    def empty_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """A boolean mask of the rows with no value for any input: an unknown entity, or
        features that were never materialized or are stale. A model scores them all alike."""
        if not self.inputs:
            return np.zeros(len(frame), dtype=bool)
        return np.asarray(frame[self.input_names].isna().all(axis=1), dtype=bool)

    def refuse_empty(self, mask: np.ndarray, data: Any, model: str) -> None:
        """The error for rows without any input value, naming the first (its entity if known)."""
        rows = np.flatnonzero(mask)
        first = int(rows[0])
        where = f"row {first}"
        why = "an unknown entity, or features not materialized or stale"
        if isinstance(data, OnlineFeatures):
            where = f"entity {data.entities[first]} (row {first})"
            statuses = {data.status[first].get(n) for n in self.input_names}
            if statuses == {"missing"}:
                why = "the entity is unknown online: no feature value was ever materialized"
            elif "stale" in statuses:
                why = "its feature values are older than their views' ttl (stale)"
        raise UsageError(
            f"{model}: {len(rows):,} of {len(mask):,} rows have no value for any of the model's "
            f"{len(self.inputs)} inputs, first {where}: {why}; scoring them would give each the "
            "same constant score",
            hint="check coverage with `tarmac features check SERVICE`; pass empty='null' to get "
                 "null predictions for such rows, or empty='score' to score them anyway")


NUMERIC = {"int64", "int32", "float64", "float32", "bool"}
_NUMBERS = {"integer", "floating", "mixed-integer-float", "decimal", "empty"}
ALLOWED = {k: _NUMBERS | ({"boolean"} if k == "bool" else set()) for k in NUMERIC}
ALLOWED["bool"] = {"boolean", "integer", "empty"}


def _wrong_type(name: str, kind: str, col: pd.Series) -> None:
    """Raise for the first value of ``col`` that is not a ``kind`` (this runs only on error)."""
    for position, value in enumerate(col.tolist()):
        if value is None or isinstance(value, float) and np.isnan(value):
            continue
        ok = isinstance(value, bool | np.bool_) if kind == "bool" else (
            isinstance(value, int | float | np.number) and not isinstance(value, bool))
        if not ok:
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise UsageError(f"input column '{name}' is {kind}, but row {position} holds "
                             f"{shown} ({type(value).__name__})",
                             hint="pass numbers for numeric features (convert text with "
                                  "pd.to_numeric first)")
    raise UsageError(f"input column '{name}' is {kind}, but holds values of another type")


def infer(feature_types: dict[str, str], features: list[str], task: str,
          prediction_type: str) -> Signature:
    """The signature of a model trained on ``features``: their declared types (not what pandas
    made of them: an integer feature with nulls is still an integer feature)."""
    inputs = [(f, feature_types[f]) for f in features]
    outputs = [("prediction", prediction_type)]
    if task == "binary":
        outputs.append(("score", "float64"))
    return Signature(inputs, outputs)


def numpy_type(values: Any) -> str:
    """The Tarmac type name of a numpy array of predictions."""
    try:
        return type_of(pa.array(values[:1000]).type) or "string"
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return "string"
