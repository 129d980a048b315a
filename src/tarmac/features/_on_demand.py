"""On-demand execution: running an on-demand view's function, offline and online alike.

``with_on_demand`` appends on-demand features to an Arrow batch and is the one code path: the
training set calls it on each batch DuckDB streams, and the online read path
(``online_on_demand``) puts the values it fetched into a batch of the same schema and calls it
too, so a model sees the same values in training and in serving. A function that raises,
leaves out a declared feature or returns values of the wrong type or length raises
``OnDemandError`` naming the view (the definitions are at fault, not the request).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tarmac.errors import OnDemandError, TarmacError, UsageError, echo
from tarmac.features.definitions import SQL_TYPES, TYPES

if TYPE_CHECKING:
    import pandas as pd

    from tarmac.features._resolve import DemandPart, Resolved


def call(part: DemandPart, frame: pd.DataFrame) -> dict[str, Any]:
    """Run an on-demand function on a frame; check it returned each declared feature."""
    try:
        out = part.view.function(frame)
    except TarmacError:
        raise
    except Exception as exc:
        raise OnDemandError(f"on-demand view '{part.view.name}' raised {type(exc).__name__}: "
                            f"{exc}", view=part.view.name) from exc
    columns = out if isinstance(out, Mapping) else {c: out[c] for c in out.columns}
    missing = [f for f, _, _ in part.features if f not in columns]
    if missing:
        raise OnDemandError(f"on-demand view '{part.view.name}' did not return "
                            f"{', '.join(missing)} (it returned: "
                            f"{echo(', '.join(map(str, columns)))})", view=part.view.name)
    return {f: columns[f] for f, _, _ in part.features}


def with_on_demand(batch: pa.RecordBatch, demand: list[DemandPart]) -> pa.RecordBatch:
    """Append on-demand features to a batch: the one code path, offline and online. The
    function sees a pandas frame of its input features (named as in their views) and its
    request values, each cast to its declared type."""
    for part in demand:
        arrays, names = [], []
        for feat, col in part.inputs.items():
            arrays.append(batch.column(col))
            names.append(feat)
        for req in part.view.request:
            try:
                arrays.append(batch.column(req.name).cast(TYPES[req.dtype]))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise UsageError(f"request value '{req.name}' of on-demand view "
                                 f"'{part.view.name}' must be {req.dtype}, got "
                                 f"{batch.column(req.name).type}") from None
            names.append(req.name)
        frame = pa.RecordBatch.from_arrays(arrays, names=names).to_pandas()
        values = call(part, frame)
        for f, out, typ in part.features:
            try:
                arr = pa.array(values[f], from_pandas=True).cast(TYPES[typ])
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise OnDemandError(f"on-demand view '{part.view.name}' returned {f} values that "
                                    f"are not {SQL_TYPES[typ]}: {exc}",
                                    view=part.view.name) from exc
            if len(arr) != batch.num_rows:
                raise OnDemandError(f"on-demand view '{part.view.name}' returned {len(arr)} {f} "
                                    f"values for {batch.num_rows} rows", view=part.view.name)
            batch = batch.append_column(out, arr)
    return batch


def online_on_demand(resolved: Resolved, entities: Sequence[Mapping[str, Any]],
                     rows: list[dict[str, Any]], status: list[dict[str, str]],
                     times: list[dict[str, str | None]]) -> None:
    """The online code path of on-demand features: the values fetched are put in a batch of
    the same schema the training set has, and go through the same function."""
    types = {out: TYPES[typ] for p in resolved.parts for _, out, typ in p.features}
    fields, columns = [], []
    for part in resolved.demand:
        for col in part.inputs.values():
            if col not in types:
                continue
            fields.append(pa.field(col, types.pop(col)))
            columns.append([r.get(col) for r in rows])
        for req in part.view.request:
            if any(f.name == req.name for f in fields):
                continue
            try:
                values = [e[req.name] for e in entities]
            except KeyError:
                raise UsageError(f"on-demand view '{part.view.name}' needs request value "
                                 f"'{req.name}' for every entity") from None
            try:
                column = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                raise UsageError(f"request value '{req.name}' must be {req.dtype}, got "
                                 f"{echo(values[:3])}") from None
            fields.append(pa.field(req.name, column.type))
            columns.append(column)
    batch = pa.RecordBatch.from_arrays(
        [c if isinstance(c, pa.Array) else pa.array(c, type=f.type)
         for c, f in zip(columns, fields, strict=True)], schema=pa.schema(fields))
    out = with_on_demand(batch, resolved.demand)
    for part in resolved.demand:
        inputs = list(part.inputs.values())
        for _f, name, _typ in part.features:
            for i, v in enumerate(out.column(name).to_pylist()):
                if v is None:
                    # a null computed from inputs that are all there is the answer (no orders:
                    # no average order value), not a missing feature; one from a missing or
                    # stale input is missing
                    bad = any(status[i].get(c) in ("missing", "stale", "invalid")
                              for c in inputs)
                    rows[i][name], status[i][name] = None, "missing" if bad else "present"
                elif type(v) is float and not math.isfinite(v):  # inf, -inf or NaN: no value
                    rows[i][name], status[i][name] = None, "invalid"  # JSON has none for it
                else:
                    rows[i][name], status[i][name] = v, "present"
                times[i][name] = None
