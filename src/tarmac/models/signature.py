"""A model version's serving contract: the input columns it takes (name, type) and what it
returns. Requests are checked against it, and a new version must keep the champion's contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from tarmac.errors import UsageError
from tarmac.features.definitions import type_of


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

    def frame(self, data: pd.DataFrame | pa.Table | list[dict[str, Any]]) -> pd.DataFrame:
        """The input columns of ``data`` in signature order; a missing one is a UsageError."""
        if isinstance(data, pa.Table):
            data = data.to_pandas()
        elif isinstance(data, list):
            data = pd.DataFrame(data)
        if not isinstance(data, pd.DataFrame):
            raise UsageError(f"predict() takes a pandas DataFrame, an Arrow table or a list of "
                             f"dicts, not {type(data).__name__}")
        missing = [n for n in self.input_names if n not in data.columns]
        if missing:
            raise UsageError(f"the frame lacks input column(s) {', '.join(missing)} "
                             f"(the model takes {', '.join(self.input_names)})")
        return data[self.input_names]


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
