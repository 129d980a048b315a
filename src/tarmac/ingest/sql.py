"""The ``sql`` connector: tables or a query of any database SQLAlchemy reaches.

Rows stream in Arrow batches, never the whole table in memory: PostgreSQL through ADBC (binary
COPY straight into Arrow, no Python objects per value), every other database through a
SQLAlchemy server-side cursor (``stream_results``) read ``batch_size`` rows at a time. The
cursor filter is pushed into the query where the column has a real temporal or numeric type.

Example source::

    crm: {type: sql, url: "postgresql://app@db/crm", tables: [customers],
          primary_key: customer_id, cursor: updated_at}
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, NoSuchTableError, SAWarning, SQLAlchemyError

from tarmac.config import redact
from tarmac.errors import SourceError
from tarmac.ingest.base import Chunk, Connector, Sample, Stream, rebatch, table_name
from tarmac.ingest.spec import SqlSource
from tarmac.ingest.sql_types import (
    SqlColumn,
    UnmappableType,
    fit_bits,
    map_columns,
    needs_python,
    plain_array,
    python_value,
    select_expr,
)

#: PostgreSQL writes intervals as ISO-8601 durations (P1Y2M3DT4H5M6S) in this session
ISO_INTERVALS = "SET intervalstyle = 'iso_8601'"
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
            "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}


class SqlConnector(Connector[SqlSource]):
    """Reads the declared tables (or the one query) of a database."""

    def __init__(self, name: str, spec: SqlSource, root: Path) -> None:
        super().__init__(name, spec, root)
        self._engine: sa.Engine | None = None
        self._columns: dict[str, dict[str, Any]] = {}  # stream -> column -> SQLAlchemy type
        self._mapped: dict[str, list[SqlColumn]] = {}  # stream -> its columns' lake types

    # -- connection ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The SQLAlchemy URL: our default drivers, SQLite paths resolved against the project."""
        url = self.spec.url
        scheme = url.split("://", 1)[0]
        if scheme in _DRIVERS:
            url = _DRIVERS[scheme] + url[len(scheme):]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url.removeprefix("sqlite:///")
            if rel and not rel.startswith(":memory:"):
                path = (self.root / rel.split("?", 1)[0]).resolve()
                url = f"sqlite:///{path}"
        return url

    def engine(self) -> sa.Engine:
        if self._engine is None:
            url = self.url
            if url.startswith("sqlite:///"):
                path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
                if str(path) != ":memory:" and not path.is_file():
                    raise self.error(f"database file {path} does not exist",
                                     hint="check the url in tarmac.yaml")
                # read-only: a survey or load must never create or change the source
                url = f"sqlite:///file:{path}?mode=ro&uri=true"
            try:
                self._engine = sa.create_engine(url, pool_pre_ping=True)
            except (SQLAlchemyError, ImportError, ValueError) as exc:
                raise self.error(f"cannot use database url {redact(self.spec.url)}: {exc}",
                                 hint="install the driver, e.g. pip install 'tarmac[postgres]' "
                                      "or 'tarmac[mysql]'") from None
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _failed(self, exc: Exception, doing: str) -> SourceError:
        """A database error as one clear line naming the source and what was being done."""
        orig = getattr(exc, "orig", None) or exc
        text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        lowered = text.lower()
        if "password authentication failed" in lowered or "access denied" in lowered:
            why = f"authentication failed ({text})"
            hint = "check the user and password (e.g. ${DB_PASSWORD} in the url)"
        elif any(s in lowered for s in ("connection refused", "could not connect",
                                        "can't connect", "timeout", "name or service not known",
                                        "could not translate host")):
            why = f"database unreachable ({text})"
            hint = "is the server running and the host/port in the url right?"
        else:
            why, hint = text, None
        return self.error(f"{doing} {redact(self.spec.url)} failed: {why}", hint=hint)

    # -- streams ------------------------------------------------------------------------------

    def streams(self) -> list[Stream]:
        spec = self.spec
        if spec.query:
            return [Stream(self.name, self.name, spec.table or table_name(self.name),
                           f"{spec.location()} (query)")]
        engine = self.engine()
        try:
            with engine.connect() as conn:
                inspector = sa.inspect(conn)
                existing = inspector.get_table_names(schema=spec.db_schema) + \
                    inspector.get_view_names(schema=spec.db_schema)
        except (SQLAlchemyError, DBAPIError) as exc:
            raise self._failed(exc, "connecting to") from None
        out = []
        for t in spec.tables or []:
            if t not in existing:
                raise self.error(f"table '{t}' not found in {spec.location()} (tables: "
                                 f"{', '.join(sorted(existing)) or 'none'})")
            lake_table = spec.table if spec.table and len(spec.tables or []) == 1 \
                else table_name(t)
            out.append(Stream(self.name, t, lake_table, f"{spec.location()} table {t}"))
        return out

    def _relation(self, stream: Stream) -> Any:
        """What rows come from: the table, or the declared query as a derived table."""
        if self.spec.query:
            return sa.text(f"({self.spec.query.strip().rstrip(';')}) AS src")
        return sa.table(stream.name, schema=self.spec.db_schema)

    def _inspect(self, stream: Stream) -> list[dict[str, Any]]:
        """The table's columns as SQLAlchemy inspects them (none for a query)."""
        if self.spec.query:
            return []
        try:
            with self.engine().connect() as conn, warnings.catch_warnings():
                # a type SQLAlchemy does not know is ours to report (see sql_types)
                warnings.simplefilter("ignore", SAWarning)
                return [dict(c) for c in sa.inspect(conn).get_columns(
                    stream.name, schema=self.spec.db_schema)]
        except (NoSuchTableError, SQLAlchemyError):
            return []

    def _types(self, stream: Stream) -> dict[str, Any]:
        """Column name -> SQLAlchemy type, reflected once per stream (empty for queries)."""
        if stream.name not in self._columns:
            self._columns[stream.name] = {c["name"]: c["type"] for c in self._inspect(stream)}
        return self._columns[stream.name]

    def _mapped_columns(self, stream: Stream) -> list[SqlColumn]:
        """The table's columns with their lake types (see ``sql_types``)."""
        if stream.name not in self._mapped:
            columns = [{"name": n, "type": t} for n, t in self._types(stream).items()]
            try:
                self._mapped[stream.name] = map_columns(self.engine().dialect.name,
                                                        stream.name, columns)
            except UnmappableType as exc:
                raise self.error(str(exc), hint="select it through a `query:` with a CAST to "
                                 "a type the lake keeps (see docs/ingestion.md)") from None
        return self._mapped[stream.name]

    def source_types(self, stream: Stream) -> dict[str, pa.DataType]:
        """The lake type of every column the table declares (none for a query): the contract
        starts from these, so no batch's values can change a column's type."""
        return {c.name: c.arrow for c in self._mapped_columns(stream) if c.arrow is not None}

    def _arrow_types(self, stream: Stream) -> dict[str, pa.DataType]:
        return self.source_types(stream)

    def _pushdown(self, stream: Stream, since: Any) -> bool:
        """Filter by cursor in the database only where it compares as the loader will."""
        if since is None or not self.spec.cursor:
            return False
        col_type = self._types(stream).get(self.spec.cursor)
        if col_type is None:
            return False
        try:
            py = col_type.python_type
        except NotImplementedError:
            return False
        if isinstance(since, datetime):
            return py is datetime and self.engine().dialect.name != "sqlite"
        return isinstance(since, int | float) and py in (int, float)

    def _select(self, stream: Stream, since: Any, limit: int | None = None) -> sa.Select[Any]:
        rel = self._relation(stream)
        columns = self._mapped_columns(stream)
        if self.engine().dialect.name == "postgresql" and \
                any(c.read_as != "plain" for c in columns):
            # uuid, interval, json, money...: read in their lake type by the database itself
            stmt: sa.Select[Any] = sa.select(*[select_expr(c) for c in columns]) \
                .select_from(rel)
        else:
            stmt = sa.select(sa.literal_column("*")).select_from(rel)
        if self._pushdown(stream, since):
            # rows without a cursor value are read every time: merged by key, or quarantined
            # (once) without one; never silently left behind (see load.py)
            cursor: Any = sa.column(self.spec.cursor or "")
            stmt = stmt.where(sa.or_(cursor >= sa.bindparam("since", since), cursor.is_(None)))
        if limit is not None:
            stmt = stmt.limit(limit)
        return stmt

    # -- reading ------------------------------------------------------------------------------

    def read(self, stream: Stream, *, since: Any = None,
             seen: dict[str, Any] | None = None) -> Iterator[Chunk]:
        stmt = self._select(stream, since)
        if self.engine().dialect.name == "postgresql":
            yield from self._read_adbc(stream, stmt)
            return
        size = self.spec.batch_size
        try:
            with self.engine().connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=size) \
                    .execute(stmt)
                names = list(result.keys())
                types = self._arrow_types(stream)
                for part in result.partitions(size):
                    table = rows_to_table(names, part, types)
                    yield Chunk(table, origin=stream.location, nbytes=table.nbytes)
        except (SQLAlchemyError, DBAPIError) as exc:
            raise self._failed(exc, f"reading {stream.name} from") from None

    def _read_adbc(self, stream: Stream, stmt: sa.Select[Any]) -> Iterator[Chunk]:
        """PostgreSQL: binary COPY into Arrow batches through ADBC."""
        try:
            import adbc_driver_postgresql.dbapi as adbc
        except ImportError:  # pragma: no cover - installed with tarmac[postgres]
            raise self.error("reading PostgreSQL needs adbc-driver-postgresql",
                             hint="pip install 'tarmac[postgres]'") from None
        dialect = self.engine().dialect
        compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.params
        sql = str(compiled)
        args: tuple[Any, ...] = ()
        if "since" in params:  # psycopg's %(since)s -> libpq's $1
            sql = sql.replace("%(since)s", "$1")
            args = (params["since"],)
        uri = "postgresql://" + self.spec.url.split("://", 1)[1]
        types = self._arrow_types(stream)
        try:
            with adbc.connect(uri) as conn, conn.cursor() as cur:
                cur.execute(ISO_INTERVALS)
                cur.execute(sql, args or None)
                batches = (plain_batch(b, types) for b in cur.fetch_record_batch())
                for table in rebatch(batches, self.spec.batch_size):
                    yield Chunk(table, origin=stream.location, nbytes=table.nbytes)
        except adbc.Error as exc:
            raise self._failed(exc, f"reading {stream.name} from") from None
        except UnmappableType as exc:
            raise self.error(f"{stream.location}: {exc}",
                             hint="CAST it in the query to a type the lake keeps (see "
                                  "docs/ingestion.md)") from None

    def sample(self, stream: Stream, rows: int) -> Sample:
        rel = self._relation(stream)
        try:
            with self.engine().connect() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(ISO_INTERVALS)
                total = conn.execute(sa.select(sa.func.count()).select_from(rel)).scalar_one()
                result = conn.execute(self._select(stream, None, limit=rows))
                table = rows_to_table(list(result.keys()), result.fetchall(),
                                      self.source_types(stream))
                # exact newest values over the whole table: the cursor and every temporal column
                temporal = [c for c, ct in self._types(stream).items() if _is_temporal(ct)]
                wanted = [c for c in dict.fromkeys([self.spec.cursor, *temporal])
                          if c and c in table.column_names]
                newest: dict[str, Any] = {}
                if wanted:
                    top: Any = conn.execute(sa.select(*[sa.func.max(sa.column(c)) for c in wanted])
                                       .select_from(rel)).one()
                    newest = dict(zip(wanted, top, strict=True))
        except (SQLAlchemyError, DBAPIError) as exc:
            raise self._failed(exc, f"sampling {stream.name} from") from None
        notes = [] if total <= rows else [f"profiled the first {rows:,} of {total:,} rows"]
        return Sample(stream, table, total_rows=int(total), estimated=False, parts=1,
                      newest=newest, notes=notes)


def _is_temporal(col_type: Any) -> bool:
    try:
        return col_type.python_type in (datetime, date)
    except NotImplementedError:
        return False


def rows_to_table(names: list[str], rows: Any,
                  types: dict[str, pa.DataType] | None = None) -> pa.Table:
    """DB-API rows -> an Arrow table, in the ``types`` given (the source's declared ones)
    where the values fit them. A column whose values do not (a MariaDB zero date among
    datetimes, SQLite's dynamic typing: 12.5 next to '12,50') becomes strings, for the contract
    to coerce to the declared type or quarantine with the raw text; an inferred decimal gets
    the widest precision, as the first values read say nothing of the largest to come."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for name, column in zip(names, columns, strict=True):
        want = (types or {}).get(name)
        values: Any = column
        try:
            array = pa.array(values, want)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # values of driver types the lake keeps otherwise (UUID, MySQL TIME and BIT):
            # converted only here, when the plain conversion failed
            values = [python_value(v) for v in values] if needs_python(values) else values
            if want is not None and (pa.types.is_boolean(want) or pa.types.is_integer(want)):
                values = fit_bits(list(values), want)
            try:
                array = pa.array(values, want)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                try:
                    array = pa.array(values)
                    if want is not None and not pa.types.is_string(array.type):
                        array = array.cast(want)  # e.g. 0/1 ints of a boolean column
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
                        OverflowError):
                    array = pa.array([None if v is None else str(v) for v in values],
                                     pa.string())
        if want is None and pa.types.is_decimal(array.type):
            array = array.cast(pa.decimal128(38, min(array.type.scale, 38)))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=names)


def plain_batch(batch: pa.RecordBatch, types: dict[str, pa.DataType]) -> pa.RecordBatch:
    """A batch as ADBC returned it, in types the lake stores: extension columns (PostgreSQL
    ``numeric`` as an opaque type over text, uuid, json) as the declared type where the table
    has one, else their text; intervals as ISO-8601 text (see ``sql_types.plain_array``)."""
    if not any(isinstance(t, pa.BaseExtensionType) or pa.types.is_interval(t) or
               pa.types.is_duration(t) or pa.types.is_time(t) for t in batch.schema.types):
        return batch
    arrays = [plain_array(name, array, types.get(name))
              for name, array in zip(batch.schema.names, batch.columns, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
