"""Open a project: read ``tarmac.yaml`` and wire the backends its URLs name.

``Project`` is the SDK's front door and exposes one namespace per concern (``p.lake``,
``p.ledger``, ``p.catalog``, ``p.features``, ``p.models``, ``p.serving``, ``p.monitoring``)
plus ``p.sql``, ``p.ingest`` and ``p.model_card``. The CLI is a thin layer over it.

Example::

    import tarmac
    p = tarmac.open(".")
    p.sql("SELECT count(*) AS n FROM customers").to_pylist()    # [{'n': 2000}]
"""

from __future__ import annotations

import atexit
import contextlib
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tarmac.catalog import Catalog, Dataset
from tarmac.config import (
    CONFIG_FILE,
    ProjectConfig,
    load_config,
    open_backend,
    redact,
    url_scheme,
)
from tarmac.errors import ConfigError, UsageError
from tarmac.ledger import Ledger

if TYPE_CHECKING:
    import pyarrow as pa

    from tarmac.access import Erasure, Retention
    from tarmac.access.identity import Identity
    from tarmac.features.store import FeatureStore
    from tarmac.ingest.load import IngestResults, LoadProgress
    from tarmac.ingest.spec import SourceSpec
    from tarmac.lake import Lake
    from tarmac.models.registry import ModelRegistry
    from tarmac.monitoring import Monitoring
    from tarmac.serving.sdk import Serving
    from tarmac.streams import StreamLog
    from tarmac.streams.produce import ProduceResult
    from tarmac.trace import DecisionTrace
    from tarmac.trace.card import ModelCard

_SCAFFOLD = Path(__file__).parent / "scaffold"


class Project:
    """An open Tarmac project. Close it (or use ``with``) to release database connections."""

    def __init__(self, root: Path, config: ProjectConfig, *, check_lake: bool = True,
                 token: str | None = None) -> None:
        self.root = root
        self.config = config
        self.catalog = Catalog(config.catalog)
        try:
            self.catalog.claim(config.name)  # another project's catalog is refused by name
            if check_lake:  # a catalog that does not know the lake's tables is refused
                from tarmac.catalog.lake_check import check

                check(self.catalog, config.lake)
        except BaseException:
            self.catalog.close()
            raise
        from tarmac.ledger.anchors import AnchorPolicy, default_anchor_path
        from tarmac.ledger.keys import resolve_key

        anchor = config.audit_anchor
        anchor_path, anchor_url, anchor_options = None, None, None
        if anchor.enabled and anchor.path and url_scheme(anchor.path) == "s3":
            # the lake's own object-store access: the same AWS_* / TARMAC_STORAGE_* settings
            objects = open_backend("lake", anchor.path)
            anchor_url, anchor_options = objects.root, objects.options
        elif anchor.enabled:
            anchor_path = (Path(anchor.path.removeprefix("file://")).expanduser() if anchor.path
                           else default_anchor_path(config.name, config.catalog))
            if not anchor_path.is_absolute():
                anchor_path = (root / anchor_path).resolve()
        secret = anchor.webhook_secret.get_secret_value() if anchor.webhook_secret else None
        self.ledger = Ledger(self.catalog, namespace=config.name, lake_uri=redact(config.lake),
                             lake_root=config.lake,
                             key=resolve_key(project=config.name, configured=config.audit_key,
                                             root=root),
                             anchors=AnchorPolicy(
                                 anchor_path, anchor.every_records, anchor.every_minutes,
                                 url=anchor_url, storage_options=anchor_options,
                                 webhook=anchor.webhook if anchor.enabled else None,
                                 webhook_secret=secret))
        from tarmac.access.policy import Access

        self.access = Access(self, token)
        """Who is acting and what they may do: roles, grants, protected aliases
        (``tarmac.access.policy``); installed on the ledger's guard when enforced."""
        if self.access.enforced:
            self.ledger.guard.authorizer = self.access
        _OPEN.add(self)  # closed at interpreter exit if the script did not close it

    @cached_property
    def lake(self) -> Lake:
        """The Delta tables (the engines load on first use, keeping catalog-only commands fast)."""
        from tarmac.lake import Lake

        storage = open_backend("lake", self.config.lake)  # root + storage_options from the env
        return Lake(storage.root, self.ledger, storage_options=storage.options,
                    owner=self.config.owner)

    @cached_property
    def features(self) -> FeatureStore:
        """The feature store: definitions, training sets, materialization, online reads."""
        from tarmac.features.store import FeatureStore

        return FeatureStore(self)

    @cached_property
    def models(self) -> ModelRegistry:
        """Models: tracked training runs, the registry, gates, promotion and rollback."""
        from tarmac.models.registry import ModelRegistry

        return ModelRegistry(self)

    @cached_property
    def monitoring(self) -> Monitoring:
        """Monitoring: drift between a reference and a current window (``drift``)."""
        from tarmac.monitoring import Monitoring

        return Monitoring(self)

    def model_card(self, name: str, version: int | None = None, *,
                   alias: str | None = None) -> ModelCard:
        """The model card of ``name`` at ``version`` (or ``alias``; neither: the champion,
        else the latest version): intended use, owner and limitations as declared on
        ``@model``, training data with lineage, metrics overall and per slice, gate results,
        the alias history, the deployment and the monitoring status. ``to_markdown()`` and
        ``to_html()`` render it (``tarmac models card``); see ``tarmac.trace.card``.

        Example::

            card = p.model_card("churn")
            Path("card.html").write_text(card.to_html())
        """
        from tarmac.trace.card import model_card

        return model_card(self, name, version, alias=alias)

    @cached_property
    def streams(self) -> StreamLog:
        """The stream log the ``streams:`` URL names (``embedded``: ``.tarmac/streams.db``)."""
        from tarmac.streams import open_stream_log

        return open_stream_log(self.config.streams, root=self.root, namespace=self.name)

    def produce(self, name: str, records: Sequence[Any], *, key: str | None = None,
                numbers: Sequence[int] | None = None) -> ProduceResult:
        """Append ``records`` to a stream source's topic (``name``: the source or its topic)
        after checking each against the source's contract: a JSON object whose declared
        columns coerce to their types and pass their rules, with its key field present and
        not null. One bad record refuses the batch (``RecordsRefused``: each record and field
        at fault) and nothing is produced; good ones go in one batch, keyed by the source's key
        field; a missing topic is created with the source's partitions. A topic no source
        declares takes any JSON values unchecked (``key``: the field keying object records).

        Example::

            r = p.produce("clicks", [{"event_id": "e1", "user_id": 7}])
            r.count, r.delivered[0].partition, r.delivered[0].offset
        """
        from tarmac.streams.produce import Producer

        self.ledger.guard.check("produce")
        return Producer(self.streams, self.sources).produce(name, records, key=key,
                                                           numbers=numbers)

    @cached_property
    def serving(self) -> Serving:
        """Serving: predictions (the HTTP path, in process), deployments, their status."""
        from tarmac.serving.sdk import Serving

        return Serving(self)

    @cached_property
    def identity(self) -> Identity:
        """Users, roles and API tokens (``add_user``, ``create_token``, ``revoke``,
        ``authenticate``; see ``tarmac.access.identity``)."""
        from tarmac.access.identity import Identity

        return Identity(self)

    @property
    def retention(self) -> Retention:
        """Retention policies: how long each lake table keeps its rows (``set``, ``unset``,
        ``list``, ``apply``; see ``tarmac.access.retention``)."""
        from tarmac.access import Retention

        return Retention(self)

    def erase(self, subject: Mapping[str, Any] | str, *, reason: str,
              dry_run: bool = False) -> Erasure:
        """Erase a data subject (``"customer_id=10001"``) from every lake table, the prediction
        log and the online store, old files included; ``dry_run`` lists what would go (see
        ``tarmac.access.erase``).

        Example: ``p.erase("customer_id=10001", reason="GDPR request #123", dry_run=True)``
        """
        from tarmac.access import erase

        return erase(self, subject, reason=reason, dry_run=dry_run)

    @property
    def name(self) -> str:
        return self.config.name

    def trace(self, prediction_id: str) -> DecisionTrace:
        """The decision trace of one logged prediction (``tarmac trace ID``): what the model
        saw, which version decided, how it was trained, gated and promoted, and per-feature
        contributions to its output (``tarmac.trace``). An unknown id is a UsageError.

        Example: ``print(p.trace(answer["predictions"][0]["id"]).summary())``
        """
        from tarmac.trace import trace

        return trace(self, prediction_id)

    def sql(self, sql: str, *,
            as_of: dict[str, int | datetime | str] | None = None) -> pa.Table:
        """Run DuckDB SQL over lake tables; ``as_of`` pins tables to a version or a time.

        Example, on a project whose ``signals`` table holds 600 customers:

        >>> p.sql("SELECT region, count(*) AS n FROM signals GROUP BY region ORDER BY region"
        ...       ).to_pylist()
        [{'region': 'east', 'n': 217}, {'region': 'north', 'n': 195}, {'region': 'south', 'n': 188}]
        >>> p.sql("SELECT count(*) AS n FROM signals", as_of={"signals": 0}).column("n")[0]
        <pyarrow.Int64Scalar: 600>
        """
        from tarmac.lake import query

        return query(self.lake, sql, as_of=as_of)

    @property
    def sources(self) -> dict[str, SourceSpec]:
        """The sources declared in ``tarmac.yaml``, validated (a bad one raises ConfigError)."""
        from tarmac.ingest.spec import parse_sources

        return parse_sources(self.config.sources, self.root / CONFIG_FILE)

    def ingest(self, names: Iterable[str] | None = None, *, full_refresh: bool = False,
               progress: Callable[[LoadProgress], None] | None = None) -> IngestResults:
        """Load declared sources into the lake (all but streams by default): one run per
        source, a result per stream with rows read, loaded, quarantined and duplicates."""
        from tarmac.ingest.load import ingest

        return ingest(self, names, full_refresh=full_refresh, progress=progress)

    def describe(self) -> dict[str, str]:
        """The backends in use, with secrets masked (safe to print)."""
        c = self.config
        return {"project": c.name, "root": str(self.root), "lake": redact(c.lake),
                "catalog": redact(c.catalog), "online_store": redact(c.online_store),
                "streams": redact(c.streams), "compute": redact(c.compute)}

    def datasets(self) -> list[Dataset]:
        """Every lake table the catalog knows, by name: version, rows, size, last write and
        who made it, owner and tags (``tarmac tables`` and the console list these).

        Example: ``[d.name for d in p.datasets()]``
        """
        from tarmac.catalog import all_items

        return list(all_items(lambda c: self.catalog.list_datasets(limit=1000, cursor=c)))

    def dataset(self, name: str) -> Dataset | None:
        """What the catalog records of one lake table (``None`` if it knows no such table)."""
        return self.catalog.get_dataset(name)

    def info(self) -> dict[str, Any]:
        """The project at a glance (``tarmac info``): the backends in use (secrets masked),
        the catalog's schema revision, how many tables, runs and audit records it holds, and
        the audit chain's head as ``SEQ:HASH``."""
        from tarmac.ledger.guard import internal

        with internal("the chain's head for tarmac info"):
            head = self.ledger.audit(limit=1).items
        return {**self.describe(), "catalog_revision": self.catalog.revision(),
                "tables": self.catalog.count("datasets"), "runs": self.catalog.count("runs"),
                "audit_records": self.catalog.count("audit_log"),
                "audit_head": f"{head[0].seq}:{head[0].hash}" if head else None}

    def close(self) -> None:
        """Release the online store, the SQL engine and the catalog's connections (safe to
        call twice). Open projects are closed at exit too, so a script that forgets cannot
        leave engine threads running into interpreter teardown."""
        _OPEN.discard(self)
        if "serving" in self.__dict__:
            self.serving.close()
        if "features" in self.__dict__:
            self.features.close()
        if "streams" in self.__dict__:
            self.streams.close()
        if "lake" in self.__dict__:  # opened lazily: only if something used it
            self.lake.close()
        self.catalog.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({self.name!r}, root={str(self.root)!r})"


_OPEN: weakref.WeakSet[Project] = weakref.WeakSet()


@atexit.register
def _close_open_projects() -> None:
    for project in list(_OPEN):  # at exit, one failing close must not stop the rest
        with contextlib.suppress(Exception):
            project.close()


def find_root(start: Path | str | None = None) -> Path:
    """The folder holding ``tarmac.yaml``: ``start``, ``$TARMAC_PROJECT``, or a parent of cwd."""
    if start is not None:
        return Path(start).resolve()
    if env := os.environ.get("TARMAC_PROJECT"):
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ConfigError(f"no {CONFIG_FILE} in {here} or any parent folder",
                      hint="cd into a project, pass --project DIR, or run `tarmac init DIR`")


def open(path: Path | str | None = None, *,  # noqa: A001 - tarmac.open is the SDK verb
         check_lake: bool = True, token: str | None = None) -> Project:
    """Open the project at ``path`` (a folder holding tarmac.yaml, or the file itself), acting
    as ``token``'s user (default: ``TARMAC_TOKEN``) where access is enforced
    (``tarmac.access.policy``).

    Opening refuses a catalog that belongs to another project, and one that does not know
    tables Tarmac wrote in the lake (see ``tarmac.catalog.lake_check``); ``check_lake=False``
    skips the second check, for the tools that repair exactly that (``tarmac catalog``)."""
    root = find_root(path)
    if root.is_file():
        root = root.parent
    config = load_config(root / CONFIG_FILE)
    return Project(root, config, check_lake=check_lake, token=token)


def init(path: Path | str, *, name: str | None = None) -> Project:
    """Create a project (``tarmac.yaml``, ``definitions.py``, ``.gitignore``) and open it.
    Refuses to overwrite an existing project's files.

    Example::

        p = tarmac.init("myproj")
        p.lake.write("customers", {"customer_id": [1, 2], "region": ["North", "South"]})
    """
    return open(scaffold(path, name=name))


def scaffold(path: Path | str, *, name: str | None = None) -> Path:
    """Write a new project's files and return its folder, without opening it (so ``tarmac.yaml``
    can still be edited, e.g. to point the catalog at PostgreSQL, before anything is created).
    Refuses to overwrite."""
    root = Path(path).resolve()
    name = name or root.name
    files = {_scaffold_name(t.name): t for t in sorted(_SCAFFOLD.iterdir())
             if t.name.endswith(".tmpl")}
    clashes = [n for n in files if (root / n).exists()]
    if clashes:
        raise UsageError(f"{root} already has {', '.join(clashes)}; not overwriting",
                         hint="choose an empty folder or remove those files")
    try:
        ProjectConfig(name=name)
    except Exception:
        raise UsageError(f"invalid project name {name!r}: use letters, digits, '_', '-' or '.', "
                         "starting with a letter") from None
    root.mkdir(parents=True, exist_ok=True)
    for out, template in files.items():
        (root / out).write_text(template.read_text().replace("{{name}}", name))
    return root


def _scaffold_name(template: str) -> str:
    name = template.removesuffix(".tmpl")
    return ".gitignore" if name == "gitignore" else name
