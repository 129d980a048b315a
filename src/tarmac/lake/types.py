"""The types the lake stores: the lossless mapping from an Arrow type to the type Delta keeps.

Public for the packages that must predict what a table will hold before writing it (ingestion
contracts); ``tarmac.lake`` itself does not export it, since SDK users never call it.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["storable_schema", "storable_type"]

_UNSIGNED = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64(),
             pa.uint64(): pa.int64()}


def storable_type(t: pa.DataType) -> pa.DataType:
    """The type Delta stores for an Arrow type (lossless)."""
    if pa.types.is_timestamp(t) and t.unit != "us":
        return pa.timestamp("us", tz=t.tz)
    if t in _UNSIGNED:
        return _UNSIGNED[t]
    if pa.types.is_dictionary(t):
        return storable_type(t.value_type)
    if pa.types.is_string_view(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_time(t):
        return pa.string()
    return t


def storable_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every type mapped by ``storable_type`` and every column nullable."""
    return pa.schema([pa.field(f.name, storable_type(f.type), True) for f in schema])
