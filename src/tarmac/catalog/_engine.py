"""Engines per dialect, migrations, and write transactions that serialize audit appends.

One class per database, named by the backend registry (``config.BACKENDS["catalog"]``), opens
its engine and serializes audit appends. SQLite: WAL journal, ``BEGIN IMMEDIATE`` for write
transactions (the whole database is the lock, so two processes never interleave audit sequence
numbers). PostgreSQL: a transaction-scoped advisory lock taken before the append. Both run the
same Alembic migrations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import OperationalError

from tarmac.config import backend, open_backend, redact
from tarmac.errors import BackendUnavailableError, ConfigError

_AUDIT_LOCK_KEY = 0x7A4D4143  # "tarmac" advisory lock id for the audit chain
CONNECT_TIMEOUT_S = 5
#: the newest migration; a test checks it against Alembic's head so opening a current catalog
#: needs one SELECT, not an Alembic import
HEAD_REVISION = "0013"


def make_engine(url: str) -> Engine:
    """An engine for a catalog URL, opened by the dialect class the backend registry names
    (``config.BACKENDS["catalog"]``); raises ``BackendUnavailableError`` if it cannot connect."""
    engine: Engine = open_backend("catalog", url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise BackendUnavailableError(
            f"cannot reach the catalog at {redact(url)}: {reason}",
            hint="is the server running and the URL in tarmac.yaml right?",
        ) from None
    return engine


class SqliteCatalog:
    """The embedded catalog: one SQLite file in WAL mode (``sqlite:///path.db``). A write
    transaction starts with ``BEGIN IMMEDIATE``: the whole database is the audit lock."""

    @classmethod
    def from_url(cls, url: str) -> Engine:
        return _sqlite_engine(url)

    @staticmethod
    def before_write(conn: Connection) -> None:
        conn.info["begin"] = "IMMEDIATE"  # read by the engine's "begin" listener

    @staticmethod
    def lock_audit(conn: Connection) -> None:
        """Nothing more to take: BEGIN IMMEDIATE already serializes writers."""


class PostgresCatalog:
    """The production catalog: PostgreSQL through psycopg 3 (``postgresql://user@host/db``)."""

    @classmethod
    def from_url(cls, url: str) -> Engine:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        try:
            return create_engine(
                url,
                connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
                pool_size=5,
                pool_recycle=1800,
            )
        except ModuleNotFoundError:
            raise ConfigError(
                "the catalog URL points at PostgreSQL but the driver is not installed",
                hint="pip install 'tarmac[postgres]'",
            ) from None

    @staticmethod
    def before_write(conn: Connection) -> None:
        """Nothing to prepare: PostgreSQL writers serialize on the advisory lock only."""

    @staticmethod
    def lock_audit(conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})


def _sqlite_engine(url: str) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.info.pop("begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that may append to the audit chain: serialized against other writers."""
    dialect = _catalog_class(engine.url.drivername)
    with engine.connect() as conn:
        dialect.before_write(conn)
        with conn.begin():
            dialect.lock_audit(conn)
            yield conn


@lru_cache(maxsize=8)
def _catalog_class(drivername: str) -> Any:
    """The registry's class for an engine's driver (``postgresql+psycopg`` -> PostgresCatalog):
    it knows how that database serializes audit appends."""
    return backend("catalog", f"{drivername}://").load()


def upgrade(engine: Engine, *, to: str = "head") -> None:
    """Bring the catalog schema to the newest revision (or ``to``), keeping existing metadata."""
    if to == "head" and current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    target = (ScriptDirectory.from_config(cfg).get_current_head() or "head") if to == "head" \
        else to
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current == target:
        return
    with write_transaction(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the catalog is at (``None`` for an empty database)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

