"""Shared helpers for the ingestion tests: declare sources on a real project, read back what a
user sees (lake rows, quarantine rows, load results), and real databases to read from.

* ``declare(project, sources)`` writes a ``sources:`` block into ``tarmac.yaml`` and reopens
  the project (the fixture closes every project it opened);
* ``sqlite_db`` / ``pg_db`` / ``maria_db`` give a fresh database (PostgreSQL: a fresh schema,
  MariaDB: a fresh database) and drop it afterwards; servers skip on a laptop, fail under CI.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

import tarmac
from conftest import require_server
from tarmac.ingest.load import IngestResults, LoadResult
from tarmac.project import Project

PG_HOST, PG_PORT = "127.0.0.1", 5432
MARIA_HOST, MARIA_PORT = "127.0.0.1", 3306

Declare = Callable[[Project, dict[str, Any]], Project]


@pytest.fixture
def declare() -> Iterator[Declare]:
    """``declare(project, sources)``: the project reopened with ``sources:`` in tarmac.yaml
    (replacing any earlier block). The project passed in is closed; the new one is closed at
    teardown."""
    opened: list[Project] = []

    def make(project: Project, sources: dict[str, Any]) -> Project:
        path = project.root / "tarmac.yaml"
        config = yaml.safe_load(path.read_text())
        config["sources"] = sources
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        project.close()
        p = tarmac.open(project.root)
        opened.append(p)
        return p

    yield make
    for p in opened:
        p.close()


# -- what a user sees -------------------------------------------------------------------------


def accounted(result: LoadResult) -> LoadResult:
    """``result``, after checking the accounting invariant every load must keep."""
    assert result.rows_read == (result.rows_loaded + result.rows_quarantined
                                + result.duplicates), result
    return result


def load(p: Project, name: str, *, full_refresh: bool = False, ok: bool = True) -> LoadResult:
    """Ingest one single-stream source; its result: succeeded with the accounting checked, or
    (``ok=False``) failed with an error that starts with the source's name."""
    results = p.ingest([name], full_refresh=full_refresh)
    assert len(results) == 1, results
    r = results[0]
    if ok:
        assert r.status == "succeeded", r.error
        accounted(r)
    else:
        assert r.status == "failed", r
        assert r.error and r.error.startswith(f"source '{name}': "), r.error
    return r


def load_all(p: Project, name: str, *, full_refresh: bool = False) -> IngestResults:
    """Ingest a (possibly multi-stream) source; every result succeeded and adds up."""
    results = p.ingest([name], full_refresh=full_refresh)
    for r in results:
        accounted(r)
        assert r.status == "succeeded", r.error
    return results


def rows(p: Project, sql: str) -> list[dict[str, Any]]:
    return p.sql(sql).to_pylist()


def column(p: Project, table: str, col: str, order: str | None = None) -> list[Any]:
    """One column of a lake table, ordered by ``order`` (default: the column itself)."""
    return [r[col] for r in rows(p, f"SELECT {col} FROM {table} ORDER BY {order or col}")]


def exists(p: Project, table: str) -> bool:
    return p.lake.exists(table)


def quarantined(p: Project, source: str | None = None) -> list[dict[str, Any]]:
    """The quarantine rows (of one source), oldest first; [] when nothing was ever rejected."""
    if not exists(p, "quarantine"):
        return []
    where = f" WHERE source = '{source}'" if source else ""
    return rows(p, "SELECT source, \"table\", reason, \"column\", value, origin, record "
                   f"FROM quarantine{where} ORDER BY rejected_at, origin, record")


@dataclass
class Snapshot:
    """What the lake shows for a table and the quarantine, to compare before/after a fault."""

    version: int | None
    data: list[dict[str, Any]]
    quarantine_version: int | None
    quarantine: list[dict[str, Any]]


def snapshot(p: Project, table: str) -> Snapshot:
    def version(name: str) -> int | None:
        return p.lake.version(name) if exists(p, name) else None

    data = rows(p, f"SELECT * FROM {table} ORDER BY ALL") if exists(p, table) else []
    return Snapshot(version(table), data, version("quarantine"), quarantined(p))


# -- databases --------------------------------------------------------------------------------


@dataclass
class Database:
    """A database to read from: ``url`` for tarmac.yaml, ``engine`` to create rows with,
    ``schema`` for the source's ``schema:`` (None: the URL's default)."""

    url: str
    engine: sa.Engine
    schema: str | None = None

    def run(self, *statements: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)

    def insert(self, table: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        cols = list(records[0])
        names = ", ".join(cols)
        values = ", ".join(f":{c}" for c in cols)
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {self.qualified(table)} ({names}) "
                                 f"VALUES ({values})"), records)

    def qualified(self, table: str) -> str:
        return f"{self.schema}.{table}" if self.schema else table

    def source(self, **options: Any) -> dict[str, Any]:
        """A ``sql`` source declaration reading this database."""
        out: dict[str, Any] = {"type": "sql", "url": self.url}
        if self.schema:
            out["schema"] = self.schema
        return out | options


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A SQLite file next to the project (``sqlite:///`` + absolute path)."""
    path = tmp_path / "source.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    yield Database(f"sqlite:///{path}", engine)
    engine.dispose()


@pytest.fixture
def pg_db(pg_schema: str) -> Iterator[Database]:
    """A fresh schema in the real PostgreSQL (see ``pg_schema``)."""
    engine = sa.create_engine(f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/test")
    yield Database(f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test", engine, pg_schema)
    engine.dispose()


@pytest.fixture
def maria_db() -> Iterator[Database]:
    """A fresh database in the real MariaDB, dropped afterwards."""
    require_server("MariaDB", MARIA_HOST, MARIA_PORT)
    name = f"src_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"mysql+pymysql://root@{MARIA_HOST}:{MARIA_PORT}/test")
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = f"mysql://root@{MARIA_HOST}:{MARIA_PORT}/{name}"
    engine = sa.create_engine(f"mysql+pymysql://root@{MARIA_HOST}:{MARIA_PORT}/{name}")
    try:
        yield Database(url, engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE {name}"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def any_db(request: pytest.FixtureRequest) -> Database:
    """The same test on SQLite, the real PostgreSQL and the real MariaDB."""
    fixture = {"sqlite": "sqlite_db", "postgres": "pg_db", "mariadb": "maria_db"}[request.param]
    db: Database = request.getfixturevalue(fixture)
    return db
