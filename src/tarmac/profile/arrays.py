"""Small Arrow helpers the column detectors share (text columns, non-null heads, shares).

Public because the survey's freshness detection and the PII detectors read columns the same way.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def as_string_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous string array (chunks combined, other types cast to text)."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return arr


def is_text(t: pa.DataType) -> bool:
    """Whether ``t`` is a text type (string, large_string, string_view)."""
    return (pa.types.is_string(t) or pa.types.is_large_string(t)
            or str(t) == "string_view")


def non_null(col: pa.Array | pa.ChunkedArray, limit: int) -> pa.Array:
    """The first ``limit`` non-null values of ``col``."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.null_count:
        arr = pc.drop_null(arr)
    return arr.slice(0, limit)


def share(mask: pa.Array | pa.ChunkedArray) -> float:
    """Share of true among the non-null values of a boolean ``mask`` (0.0 when none)."""
    n = len(mask) - mask.null_count
    return (pc.sum(mask).as_py() or 0) / n if n else 0.0
