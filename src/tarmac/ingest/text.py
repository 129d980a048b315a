"""Text and tables the file connector reads: lines decoded, JSON lines split, tables joined.

Vectorised helpers (numpy over the bytes, Arrow over the columns) kept apart from the
connector: ``decode_lines`` turns a file into UTF-8 with each undecodable line rejected,
``split_json_lines`` drops lines that cannot be JSON objects, ``flatten_nested`` and
``concat_tables`` give every path the same flat, text-when-mixed columns.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from tarmac.ingest.base import Reject, records_table


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


def _object_lines(raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per line of non-empty ``raw``: start, end (exclusive, before the newline), whether it is
    blank, whether it can be a JSON object (first byte ``{``, last ``}``); numpy over bytes."""
    b = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(b == ord("\n"))
    if ends.size == 0 or ends[-1] != b.size - 1:
        ends = np.append(ends, b.size)
    starts = np.r_[0, ends[:-1] + 1]
    nonblank = (ends - starts) > 0
    last = np.where(nonblank, b[np.maximum(ends - 1, 0)], 0)
    last = np.where(last == ord("\r"), b[np.maximum(ends - 2, 0)], last)
    first = b[np.minimum(starts, b.size - 1)]
    valid = nonblank & (first == ord("{")) & (last == ord("}"))
    return starts, ends, nonblank, valid


def split_json_lines(raw: bytes, origin: str) -> tuple[bytes, list[Reject]]:
    """Drop lines that cannot be JSON objects (first byte not ``{`` or last not ``}``), found
    with numpy over the bytes; returns the rest and a ``Reject`` per dropped line."""
    if not raw.strip():
        return b"", []
    b = np.frombuffer(raw, dtype=np.uint8)
    starts, ends, nonblank, valid = _object_lines(raw)
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


def json_values(values: Sequence[bytes]) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    """Records that are one JSON object each (a stream's message values) as one table.

    Returns the table, the index of the value each row came from, and ``(index, reason)`` for
    every value that is not UTF-8, not JSON or not an object. Arrow's JSON reader parses the
    batch in one call; a batch it cannot read whole (a broken value, types that change between
    records) is parsed value by value, and its columns unified like ``records_table``.
    """
    if not values:
        return pa.table({}), np.zeros(0, dtype=np.int64), []
    vals = list(values)
    bad: dict[int, str] = {}
    joined = b"\n".join(vals)
    if joined.count(b"\n") != len(vals) - 1:  # a value spread over lines: made one line
        for i, v in enumerate(vals):
            if b"\n" in v:
                try:
                    vals[i] = json.dumps(json.loads(v), ensure_ascii=False,
                                         separators=(",", ":")).encode("utf-8")
                except (ValueError, UnicodeDecodeError) as exc:
                    bad[i], vals[i] = f"not valid JSON ({exc})", b""
        joined = b"\n".join(vals)
    text, undecodable = decode_lines(joined, "", "utf-8")
    for r in undecodable:
        bad[int(r.origin.rsplit(":", 1)[1]) - 1] = "not valid UTF-8" + r.reason[
            r.reason.index(" (byte"):]
    starts, ends, nonblank, valid = _object_lines(text) if text else (
        np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, bool), np.zeros(1, bool))
    for j in np.flatnonzero(~valid[: len(vals)]).tolist():
        bad.setdefault(j, "not a JSON object" if nonblank[j] else "empty value")
    ok = np.ones(len(vals), dtype=bool)
    ok[list(bad)] = False
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        return pa.table({}), keep, sorted(bad.items())
    body = text + b"\n" if keep.size == len(vals) else \
        b"\n".join(text[starts[i]:ends[i]] for i in keep) + b"\n"
    try:
        table = pajson.read_json(io.BytesIO(body),
                                 read_options=pajson.ReadOptions(block_size=max(1 << 20,
                                                                                len(body) + 1)))
        if table.num_rows == keep.size:
            return flatten_nested(table), keep, sorted(bad.items())
    except pa.ArrowInvalid:
        pass
    rows: list[dict[str, Any]] = []
    kept: list[int] = []
    for k in keep.tolist():  # the slow path, only for a batch Arrow could not read whole
        try:
            value = json.loads(text[starts[k]:ends[k]])
        except ValueError as exc:
            bad[k] = f"not valid JSON ({exc})"
            continue
        if isinstance(value, dict):
            rows.append(value)
            kept.append(k)
        else:
            bad[k] = "not a JSON object"
    return records_table(rows), np.array(kept, dtype=np.int64), sorted(bad.items())
