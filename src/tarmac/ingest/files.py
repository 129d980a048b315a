"""The ``file`` connector: CSV, JSON-lines and Parquet files matched by a glob, local or on S3.

Each file is loaded once: the loader remembers its path (relative to the glob's folder, so a
moved or copied project does not re-read it), size and modification time, and a later run reads
only files that are new or changed. gzip, zstd and bz2 files are decompressed on the fly. Files
are read in Arrow batches (pyarrow's streaming CSV reader, Parquet row groups); damaged records
never stop a file:

* a CSV line with the wrong number of fields (a truncated file) or bytes that are not valid in
  the declared encoding becomes a ``Reject`` with the line, the rest loads;
* a CSV file in another delimiter is rejected whole (and not remembered as loaded);
* a JSON line that is not JSON becomes a ``Reject``; a file whose values change type between
  lines (``42`` then ``"42"``) is read by DuckDB, which unifies the types, and only if that
  fails line by line.

Example source::

    products: {type: file, path: "data/products/*.csv", primary_key: sku}
"""

from __future__ import annotations

import fnmatch
import glob
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from tarmac.ingest import compression
from tarmac.ingest.base import (
    Chunk,
    Connector,
    FileMark,
    Reject,
    Sample,
    Stream,
    rebatch,
    records_table,
    table_name,
)
from tarmac.ingest.spec import FileSource
from tarmac.ingest.text import concat_tables, decode_lines, flatten_nested, split_json_lines
from tarmac.lake import quote_ident

CSV_BLOCK = 4 << 20  # bytes per CSV block; the reader reads ~32 blocks ahead, so this bounds
# its memory (16 MiB blocks held ~500 MiB) and chunks are combined up to batch_size rows
_GLOB_CHARS = set("*?[")
SAMPLE_BYTES = 4 << 20  # bytes of a text file the survey reads to estimate its row count


class FileConnector(Connector[FileSource]):
    """Reads the files a glob matches, oldest name first."""

    _duck: Any = None  # the DuckDB the JSON fallback uses, opened on first need

    def __init__(self, name: str, spec: FileSource, root: Path) -> None:
        super().__init__(name, spec, root)
        self.not_loaded: set[str] = set()  # files read but not to be remembered as loaded

    # -- finding files ------------------------------------------------------------------------

    @property
    def remote(self) -> bool:
        return "://" in self.spec.path and not self.spec.path.startswith("file://")

    def pattern(self) -> str:
        """The glob, absolute (relative paths are relative to the project folder)."""
        path = self.spec.path.removeprefix("file://")
        if self.remote or os.path.isabs(path):
            return path
        return str(self.root / path)

    def glob_root(self) -> str:
        """The folder the glob starts from (``/proj/data/o`` for ``data/o/*.csv``): files seen
        are remembered relative to it, so a moved or copied project does not re-read them."""
        pattern = self.pattern()
        cut = min((i for i, ch in enumerate(pattern) if ch in _GLOB_CHARS), default=len(pattern))
        return pattern[:cut].rsplit("/", 1)[0]

    def key(self, path: str) -> str:
        """How a file is remembered: its path relative to the glob's root. An absolute path
        remembered by an earlier version (perhaps of the project in another folder) is mapped
        by the glob's folder relative to the project (``.../data/o/a.csv`` -> ``a.csv``)."""
        root = self.glob_root()
        if path.startswith(root + "/"):
            return path[len(root) + 1:]
        declared = self.spec.path.removeprefix("file://")
        if self.remote or os.path.isabs(declared) or not os.path.isabs(path):
            return path
        cut = min((i for i, ch in enumerate(declared) if ch in _GLOB_CHARS),
                  default=len(declared))
        rel = os.path.normpath(declared[:cut].rsplit("/", 1)[0]) if "/" in declared[:cut] \
            else ""
        if rel in ("", "."):
            return os.path.basename(path) if "/" not in declared else path
        marker = f"/{rel}/"
        at = path.rfind(marker)
        return path[at + len(marker):] if at >= 0 else path

    def files(self) -> list[FileMark]:
        """Every file the glob matches now, sorted by path."""
        pattern = self.pattern()
        if self.remote:
            return self._remote_files(pattern)
        marks = []
        for path in sorted(glob.glob(pattern, recursive=True)):
            try:
                st = os.stat(path)
            except OSError as exc:
                raise self.error(f"cannot read {path}: {exc.strerror}") from None
            if os.path.isfile(path):
                marks.append(FileMark(path, st.st_size, st.st_mtime_ns))
        return marks

    def _remote_files(self, pattern: str) -> list[FileMark]:
        cut = min((i for i, ch in enumerate(pattern) if ch in _GLOB_CHARS), default=len(pattern))
        base = pattern[:cut].rsplit("/", 1)[0]
        try:
            fs, root = pafs.FileSystem.from_uri(base)
            infos = fs.get_file_info(pafs.FileSelector(root, recursive=True,
                                                       allow_not_found=True))
        except (OSError, pa.ArrowInvalid) as exc:
            raise self.error(f"cannot list {base}: {exc}") from None
        scheme = pattern.split("://", 1)[0]
        out = []
        for info in infos:
            uri = f"{scheme}://{info.path}"
            if info.type == pafs.FileType.File and fnmatch.fnmatch(uri, pattern):
                mtime = info.mtime_ns if info.mtime_ns is not None else 0
                out.append(FileMark(uri, info.size or 0, mtime))
        return sorted(out, key=lambda m: m.path)

    def streams(self) -> list[Stream]:
        return [Stream(self.name, self.name, self.spec.table or table_name(self.name),
                       self.spec.location())]

    def _existing(self) -> list[FileMark]:
        marks = self.files()
        if not marks:
            raise self.error(f"no files match {self.spec.path!r}",
                             hint="check the path in tarmac.yaml (relative paths start at the "
                                  "project folder)")
        return marks

    # -- reading ------------------------------------------------------------------------------

    def read(self, stream: Stream, *, since: Any = None,
             seen: dict[str, FileMark] | None = None) -> Iterator[Chunk]:
        # remembered paths relative to the glob's root; absolute ones (earlier versions) mapped,
        # a relative entry winning over a mapped one
        whole = {p for p in seen or {} if os.path.isabs(p) or "://" in p}
        known = {self.key(p): m for p, m in (seen or {}).items() if p in whole} | {
            p: m for p, m in (seen or {}).items() if p not in whole}
        for mark in self._existing():
            before = known.get(self.key(mark.path))
            if before is not None and (before.size, before.mtime_ns) == (mark.size,
                                                                         mark.mtime_ns):
                continue  # loaded before, unchanged
            last: Chunk | None = None
            found = 0  # rows and rejects: a file with content must yield some
            for chunk in self._read_file(mark):
                found += chunk.data.num_rows + len(chunk.rejects)
                # bytes read are the file's bytes, counted once (not the parsed Arrow size)
                chunk.nbytes = mark.size if last is None else 0
                if last is not None:
                    yield last
                last = chunk
            if last is None:
                last = Chunk(pa.table({}), origin=mark.path, nbytes=mark.size)
            if not found and mark.size:
                self._check_empty(mark)
            last.done_file = None if mark.path in self.not_loaded else FileMark(
                self.key(mark.path), mark.size, mark.mtime_ns)
            yield last

    def _read_file(self, mark: FileMark) -> Iterator[Chunk]:
        fmt = self.spec.file_format(mark.path)
        try:
            if fmt == "csv":
                yield from self._read_csv(mark)
            elif fmt == "jsonl":
                yield from self._read_jsonl(mark)
            else:
                yield from self._read_parquet(mark)
        except PermissionError:
            raise self.error(f"cannot read {mark.path}: permission denied") from None
        except FileNotFoundError:
            raise self.error(f"{mark.path} disappeared while it was being read") from None
        except pa.ArrowInvalid as exc:
            raise self.error(f"{mark.path} is not a readable {fmt} file: {exc}") from None
        except OSError as exc:  # a corrupt compressed stream, a failing disk or network
            raise self.error(f"cannot read {mark.path}: {exc}") from None

    def _check_empty(self, mark: FileMark) -> None:
        """A file with bytes that yields no row and no reject was not understood (raw bytes
        taken for a header): fail rather than remember it as loaded. A CSV with only its header
        line, or a Parquet file without rows, is a real empty file."""
        fmt = self.spec.file_format(mark.path)
        if fmt == "parquet":
            return
        with self._open_text(mark.path) as f:
            head = bytes(f.read(1 << 20))
        lines = [line for line in head.splitlines() if line.strip()]
        if len(lines) <= (1 if fmt == "csv" else 0):
            return
        raise self.error(f"{mark.path} has {mark.size:,} bytes but no {fmt} rows could be read "
                         "from it; nothing was loaded",
                         hint="check the file's format, delimiter and compression (gzip, zstd "
                              "and bz2 are read)")

    def _open(self, path: str) -> Any:
        if self.remote:
            fs, inner = pafs.FileSystem.from_uri(path)
            return fs.open_input_stream(inner)
        return pa.OSFile(path, "rb")

    def _open_raw_text(self, path: str) -> tuple[Any, Any]:
        """The text stream of a CSV or JSON-lines file, decompressed when its first bytes say
        gzip, zstd or bz2, and the raw stream under it (its position: compressed bytes read).
        An archive or a binary file fails here, naming what it is."""
        raw = self._open(path)
        try:
            head = bytes(raw.read(compression.HEAD))
            codec = compression.sniff(head)
            what = None if codec else compression.unreadable(head)
            if what is not None:
                raise self.error(f"{path} is {what}, not {self.spec.file_format(path)} text",
                                 hint="Tarmac reads plain, gzip, zstd and bz2 files; unpack "
                                      "archives first")
            if raw.seekable():
                raw.seek(0)
            else:
                raw.close()
                raw = self._open(path)
        except BaseException:
            raw.close()
            raise
        return compression.decompressed(raw, codec), raw

    def _open_text(self, path: str) -> Any:
        return self._open_raw_text(path)[0]

    def _read_bytes(self, path: str) -> bytes:
        with self._open_text(path) as f:
            return bytes(f.read())

    # CSV ------------------------------------------------------------------------------------

    def _read_csv(self, mark: FileMark, *, as_text: bool = False, skip: int = 0,
                  multiline: bool | None = None) -> Iterator[Chunk]:
        """Stream a CSV file; a value that breaks the inferred types restarts the rest of the
        file as text (the contract coerces it), invalid UTF-8 falls back to line decoding.
        Quoted values with newlines need Arrow's slower ``newlines_in_values`` parsing when they
        straddle a block: the source can declare it, else the rest of the file is re-read with
        it when Arrow's parser gets out of sync with its chunker. ``skip``: rows already read."""
        multiline = self.spec.newlines_in_values if multiline is None else multiline
        if skip == 0 and not as_text:
            other = self._other_delimiter(mark.path)
            if other is not None:
                yield self._whole_file_rejected(mark, other)
                return
        rejects: list[Reject] = []

        def bad_row(row: Any) -> str:
            rejects.append(Reject(mark.path, f"CSV row has the wrong number of fields "
                                             f"(expected {row.expected_columns}, got "
                                             f"{row.actual_columns})", row.text))
            return "skip"

        declared = {c: pa.string() for c, s in self.spec.columns.items() if s.type in (
            "string", "str", "text")}
        read = pacsv.ReadOptions(block_size=CSV_BLOCK, encoding=self.spec.encoding,
                                 skip_rows_after_names=skip)
        parse = pacsv.ParseOptions(delimiter=self.spec.delimiter, invalid_row_handler=bad_row,
                                   newlines_in_values=multiline)
        if as_text:
            declared = dict.fromkeys(self._csv_header(mark.path), pa.string())
        convert = self._convert(declared)
        done = 0  # rows read: yielded rows and yielded rejects (a restart skips them)
        undecodable = False
        try:
            with self._open_text(mark.path) as f:
                reader = pacsv.open_csv(f, read_options=read, parse_options=parse,
                                        convert_options=convert)

                def decodable() -> Iterator[pa.RecordBatch]:
                    nonlocal undecodable
                    for batch in reader:
                        if any(pa.types.is_binary(t) for t in batch.schema.types):
                            undecodable = True  # Arrow infers text it cannot decode as binary
                            return
                        yield batch

                for table in rebatch(decodable(), self.spec.batch_size):
                    if undecodable:
                        break  # the rows held back go through the line-by-line path
                    done += table.num_rows + len(rejects)
                    yield Chunk(table, mark.path, rejects=rejects)
                    rejects = []
        except pa.ArrowInvalid as exc:
            text = str(exc)
            if "UTF8" in text or "utf8" in text.lower() or "decode" in text.lower():
                yield from self._read_csv_lines(mark, skip + done)
                return
            if "conversion error" in text.lower() and not as_text:
                yield from self._read_csv(mark, as_text=True, skip=skip + done,
                                          multiline=multiline)
                return
            if "out of sync with chunker" in text and not multiline:
                yield from self._read_csv(mark, as_text=as_text, skip=skip + done,
                                          multiline=True)
                return
            if "Empty CSV file" in text:
                return
            raise
        if undecodable:
            yield from self._read_csv_lines(mark, skip + done)
            return
        if rejects:
            yield Chunk(pa.table({}), mark.path, rejects=rejects)

    def _convert(self, column_types: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
        """How CSV text becomes values: only an empty field (and the markers the source declares
        in ``null_values``) is null. Arrow's default list (``NA``, ``NULL``, ``n/a``, ``#N/A``,
        ...) would turn Namibia's country code into a null and lose a bad float's raw text."""
        return pacsv.ConvertOptions(column_types=column_types,
                                    null_values=["", *self.spec.null_values],
                                    strings_can_be_null=True, quoted_strings_can_be_null=False)

    def _other_delimiter(self, path: str) -> str | None:
        """The delimiter a CSV file really uses when its header, split by the declared one, is
        a single name that another common delimiter splits into several (``id;name;amount``
        read with ``,``): its rows would become one junk column. None when it fits."""
        with self._open_text(path) as f:
            first = bytes(f.read(64 << 10)).split(b"\n", 1)[0].rstrip(b"\r")
        try:
            line = first.decode(self.spec.encoding)
        except (UnicodeDecodeError, LookupError):
            return None
        if self.spec.delimiter in line:
            return None
        counts = {d: line.count(d) for d in (",", ";", "\t", "|") if d != self.spec.delimiter}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else None

    def _whole_file_rejected(self, mark: FileMark, other: str) -> Chunk:
        """A file in another delimiter, quarantined line by line with one reason, and not
        remembered as loaded: fixed (or declared as its own source) it loads next time."""
        self.not_loaded.add(mark.path)
        text, rejects = decode_lines(self._read_bytes(mark.path), mark.path, self.spec.encoding)
        lines = text.decode().splitlines()
        header = lines[0] if lines else ""
        shown = header if len(header) <= 120 else header[:117] + "..."
        reason = (f"the file's header {shown!r} is separated by {other!r}, not by the "
                  f"source's delimiter {self.spec.delimiter!r}: the whole file is quarantined "
                  "and will be read again (declare delimiter, or a source for these files)")
        rejects += [Reject(f"{mark.path}:{i}", reason, line)
                    for i, line in enumerate(lines[1:], 2) if line.strip()]
        return Chunk(pa.table({}), mark.path, rejects=rejects)

    def _csv_header(self, path: str) -> list[str]:
        with self._open_text(path) as f:
            first = bytes(f.read(1 << 20)).split(b"\n", 1)[0]
        return pacsv.read_csv(io.BytesIO(first + b"\n"),
                              read_options=pacsv.ReadOptions(encoding=self.spec.encoding),
                              parse_options=pacsv.ParseOptions(delimiter=self.spec.delimiter)
                              ).column_names

    def _read_csv_lines(self, mark: FileMark, skip: int) -> Iterator[Chunk]:
        """The slow path for a file with bytes its encoding cannot decode: each such line is
        quarantined (decoded as Latin-1 so the record is kept), the rest parsed as text."""
        raw = self._read_bytes(mark.path)
        text, rejects = decode_lines(raw, mark.path, self.spec.encoding)
        good = [line + b"\n" for line in text.split(b"\n") if line.strip()]
        if not good:
            yield Chunk(pa.table({}), mark.path, rejects=rejects)
            return
        header = pacsv.read_csv(io.BytesIO(good[0]), parse_options=pacsv.ParseOptions(
            delimiter=self.spec.delimiter)).column_names
        body = good[1:][skip:]
        bad: list[Reject] = []

        def bad_row(row: Any) -> str:
            bad.append(Reject(mark.path, "CSV row has the wrong number of fields", row.text))
            return "skip"

        table = pacsv.read_csv(
            io.BytesIO(good[0] + b"".join(body)),  # decode_lines made it UTF-8
            parse_options=pacsv.ParseOptions(delimiter=self.spec.delimiter,
                                             invalid_row_handler=bad_row),
            convert_options=self._convert(dict.fromkeys(header, pa.string())))
        yield Chunk(table, mark.path, nbytes=len(raw), rejects=rejects + bad)

    # JSON lines -----------------------------------------------------------------------------

    def _read_jsonl(self, mark: FileMark) -> Iterator[Chunk]:
        raw = self._read_bytes(mark.path)
        text, undecodable = decode_lines(raw, mark.path, self.spec.encoding)
        body, rejects = split_json_lines(text, mark.path)
        rejects = undecodable + rejects
        if not body:
            yield Chunk(pa.table({}), mark.path, nbytes=len(raw), rejects=rejects)
            return
        try:
            table = pajson.read_json(io.BytesIO(body),
                                     read_options=pajson.ReadOptions(block_size=8 << 20))
        except pa.ArrowInvalid:
            table, more = self._jsonl_fallback(body, mark.path)
            rejects += more
        for i, batch in enumerate(table.to_batches(max_chunksize=self.spec.batch_size)):
            yield Chunk(pa.Table.from_batches([batch]), mark.path,
                        nbytes=len(raw) if i == 0 else 0, rejects=rejects if i == 0 else [])
        if table.num_rows == 0:
            yield Chunk(pa.table({}), mark.path, nbytes=len(raw), rejects=rejects)

    def _jsonl_fallback(self, body: bytes, origin: str) -> tuple[pa.Table, list[Reject]]:
        """Types that change between lines: DuckDB unifies them; broken lines: one by one."""
        import duckdb

        with tempfile.NamedTemporaryFile(suffix=".jsonl") as tmp:
            tmp.write(body)
            tmp.flush()
            try:
                con = self._duckdb()
                rel = con.sql(f"SELECT * FROM read_json('{tmp.name}', "
                              "format='newline_delimited', sample_size=-1)")
                # a column whose values change type is unified as JSON: unquote its text
                cols = ", ".join(
                    f"{quote_ident(n)}->>'$' AS {quote_ident(n)}" if str(t) == "JSON"
                    else quote_ident(n)
                    for n, t in zip(rel.columns, rel.types, strict=True))
                return flatten_nested(rel.select(cols).to_arrow_table()), []
            except duckdb.Error:
                pass
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        for line in body.splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                rejects.append(Reject(origin, f"not valid JSON ({exc})",
                                      line.decode("utf-8", "replace")))
                continue
            if isinstance(value, dict):
                rows.append(value)
            else:
                rejects.append(Reject(origin, "JSON line is not an object",
                                      line.decode("utf-8", "replace")))
        return records_table(rows), rejects

    def _duckdb(self) -> Any:
        """One in-memory DuckDB per connector (a file's fallback read costs no new engine)."""
        import duckdb

        if self._duck is None:
            self._duck = duckdb.connect()
            self._duck.execute("SET enable_progress_bar = false")
        return self._duck

    def close(self) -> None:
        if self._duck is not None:
            self._duck.close()
            self._duck = None

    # Parquet --------------------------------------------------------------------------------

    def _read_parquet(self, mark: FileMark) -> Iterator[Chunk]:
        with self._open(mark.path) as f:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=self.spec.batch_size):
                yield Chunk(pa.Table.from_batches([batch]), mark.path, nbytes=batch.nbytes)

    # -- survey -------------------------------------------------------------------------------

    def _count_rows(self, mark: FileMark) -> tuple[int, bool]:
        """Rows in a file, and whether that is an estimate: Parquet from its footer; text
        files by counting lines, in the first ``SAMPLE_BYTES`` only for bigger files."""
        fmt = self.spec.file_format(mark.path)
        if fmt == "parquet":
            with self._open(mark.path) as f:
                return pq.ParquetFile(f).metadata.num_rows, False
        text, raw = self._open_raw_text(mark.path)
        with text:
            head = bytes(text.read(SAMPLE_BYTES))
            whole = len(bytes(text.read(1))) == 0
            used = raw.tell() if text is not raw else len(head)  # bytes of the file read
        lines = head.count(b"\n") + (0 if head.endswith(b"\n") or not head else 1)
        header = 1 if fmt == "csv" else 0
        if whole:
            return max(lines - header, 0), False
        per_byte = (head.count(b"\n") or 1) / max(used, 1)
        return max(int(per_byte * mark.size) - header, 0), True

    def sample(self, stream: Stream, rows: int) -> Sample:
        marks = self._existing()
        total_bytes = sum(m.size for m in marks)
        tables: list[pa.Table] = []
        got = 0
        exact = True  # every file was read to its end
        for i, mark in enumerate(marks):
            chunks = self._read_file(mark)
            for chunk in chunks:
                if chunk.data.num_rows:
                    tables.append(chunk.data)
                    got += chunk.data.num_rows
                if got >= rows:
                    break
            if got >= rows:
                # stopped early: exact only if this was the last file and it had no more rows
                exact = i == len(marks) - 1 and next(iter(chunks), None) is None
                break
        table = concat_tables(tables).slice(0, rows) if tables else pa.table({})
        total: int | None = got
        estimated = False
        if not exact:
            counts = [self._count_rows(m) for m in marks]
            total = sum(n for n, _ in counts)
            estimated = any(est for _, est in counts)
        notes = [] if not estimated else [
            f"row count estimated from line lengths in the first {SAMPLE_BYTES >> 20} MiB of "
            f"each file ({len(marks)} files)"]
        return Sample(stream, table, total_rows=total, estimated=estimated, nbytes=total_bytes,
                      parts=len(marks), notes=notes)
