"""Text and tables the file connector reads: lines decoded, JSON lines split, tables joined.

Vectorised helpers (numpy over the bytes, Arrow over the columns) kept apart from the
connector: ``decode_lines`` turns a file into UTF-8 with each undecodable line rejected,
``split_json_lines`` drops lines that cannot be JSON objects, ``flatten_nested`` and
``concat_tables`` give every path the same flat, text-when-mixed columns.
"""

from __future__ import annotations

import codecs
import json

import numpy as np
import pyarrow as pa

from tarmac.ingest.base import Reject


def decode_lines(raw: bytes, origin: str, encoding: str) -> tuple[bytes, list[Reject]]:
    """``raw`` as UTF-8 (what the JSON readers take), each line ``encoding`` cannot decode
    blanked (line numbers kept) and returned as a ``Reject``, decoded as Latin-1 to keep it.
    Arrow's JSON reader does not check UTF-8: a bad byte would reach the lake."""
    utf8 = codecs.lookup(encoding).name == "utf-8"
    try:
        decoded = raw.decode(encoding)
        return (raw if utf8 else decoded.encode()), []
    except UnicodeDecodeError:
        pass
    lines: list[bytes] = []
    rejects: list[Reject] = []
    for i, line in enumerate(raw.split(b"\n")):
        try:
            lines.append(line.decode(encoding).encode())
        except UnicodeDecodeError as exc:
            rejects.append(Reject(f"{origin}:{i + 1}",
                                  f"line {i + 1} is not valid {encoding} (byte "
                                  f"0x{line[exc.start]:02x} at position {exc.start})",
                                  line.decode("latin-1").rstrip("\r")))
            lines.append(b"")
    return b"\n".join(lines), rejects


def split_json_lines(raw: bytes, origin: str) -> tuple[bytes, list[Reject]]:
    """Drop lines that cannot be JSON objects (first byte not ``{`` or last not ``}``), found
    with numpy over the bytes; returns the rest and a ``Reject`` per dropped line."""
    if not raw.strip():
        return b"", []
    b = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(b == ord("\n"))
    if ends.size == 0 or ends[-1] != b.size - 1:
        ends = np.append(ends, b.size)
    starts = np.r_[0, ends[:-1] + 1]
    lengths = ends - starts
    nonblank = lengths > 0
    last = np.where(nonblank, b[np.maximum(ends - 1, 0)], 0)
    last = np.where(last == ord("\r"), b[np.maximum(ends - 2, 0)], last)
    first = b[np.minimum(starts, b.size - 1)]
    valid = nonblank & (first == ord("{")) & (last == ord("}"))
    bad = np.flatnonzero(nonblank & ~valid)
    rejects = [Reject(f"{origin}:{i + 1}", "not a JSON object (broken or truncated line)",
                      raw[starts[i]:ends[i]].decode("utf-8", "replace")) for i in bad]
    if bad.size == 0:
        return raw, []
    spans = np.minimum(ends + 1, b.size) - starts
    keep = np.repeat(valid, spans)
    body = b[: keep.size][keep].tobytes()
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return body, rejects


def flatten_nested(table: pa.Table) -> pa.Table:
    """Nested struct/list columns (DuckDB's JSON reading) as JSON text, like the other paths."""
    out = []
    for col in table.columns:
        if pa.types.is_struct(col.type) or pa.types.is_list(col.type) or \
                pa.types.is_map(col.type):
            out.append(pa.array([None if v is None else json.dumps(v, default=str)
                                 for v in col.to_pylist()], pa.string()))
        else:
            out.append(col)
    return pa.Table.from_arrays(out, names=table.column_names)


def concat_tables(tables: list[pa.Table]) -> pa.Table:
    """Tables read from several files as one: a column whose type differs between files (ids
    as numbers in one file, as text in another) becomes text, as the contract would see it."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        types: dict[str, set[pa.DataType]] = {}
        for t in tables:
            for f in t.schema:
                types.setdefault(f.name, set()).add(f.type)
        mixed = {n for n, ts in types.items() if len(ts - {pa.null()}) > 1}
        fixed = [t.cast(pa.schema([(f.name, pa.string() if f.name in mixed else f.type)
                                   for f in t.schema])) for t in tables]
        return pa.concat_tables(fixed, promote_options="permissive")
