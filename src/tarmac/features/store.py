"""``p.features``: the feature store of a project, offline and online.

``FeatureStore`` is a thin facade: it keeps the project's registered definitions (cached, and
re-read only when the registry changes, checked at most every ``REFRESH_S`` seconds, so the
online path never queries the catalog per request) and hands each job to the module that does
it:

* ``_resolve``: a service name or ``view:feature`` refs -> stored views, columns, on-demand views;
* ``_training``: point-in-time-correct training sets (``TrainingSet``);
* ``_online_read``: the online read path (``OnlineFeatures``, each value present, missing,
  stale or invalid), what ``POST /features`` and model serving read through ``online``;
* ``_on_demand``: on-demand functions, one code path offline and online;
* ``materialize``, ``check``, ``registry``: materialization, online/offline checks, ``apply``.

Example::

    fs = tarmac.open(".").features
    train = fs.training_set("SELECT customer_id, label_time, churned FROM labels", "churn",
                            timestamp="label_time", label="churned").to_pandas()
    fs.online("churn", [{"customer_id": 42}]).rows[0]["sessions_7d"]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tarmac.catalog import features as fcat
from tarmac.errors import UsageError
from tarmac.features import registry
from tarmac.features._online_read import OnlineFeatures, OnlineReader, OnlineState, ReadPlan
from tarmac.features._resolve import DemandPart, Resolved, ViewPart, resolve
from tarmac.features._training import EntityFrame, TrainingSet
from tarmac.features._training import training_set as _training_set
from tarmac.features.definitions import OnDemandFeatureView
from tarmac.features.offline import Semantics
from tarmac.lake.masking import REDACT, mask_kind, mask_value

if TYPE_CHECKING:
    from tarmac.features.check import CheckReport
    from tarmac.features.materialize import MaterializeProgress, MaterializeResult
    from tarmac.features.online import OnlineStore
    from tarmac.features.streaming import StreamingFeatures
    from tarmac.project import Project

__all__ = ["DemandPart", "EntityFrame", "FeatureRefs", "FeatureStore", "OnlineFeatures",
           "OnlineState", "Resolved", "TrainingSet", "ViewPart"]

REFRESH_S = 5.0
FeatureRefs = str | Sequence[str]  # a service name, or refs: "view:feature" or "view" (all)


#: how long the personal features of a read plan are trusted before the tags are read again
PERSONAL_CACHE_SECONDS = 30.0


class FeatureStore:
    """A project's feature store: definitions, training sets, materialization, online reads."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._lock = threading.Lock()
        self._defs: registry.Definitions | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked_at = 0.0
        self._reader = OnlineReader()
        self._online: OnlineStore | None = None
        self._streaming: StreamingFeatures | None = None

    # -- definitions --------------------------------------------------------------------------

    @property
    def definitions_path(self) -> Any:
        """The project's ``definitions.py``."""
        return self.project.root / registry.DEFINITIONS_FILE

    def declared(self) -> registry.Definitions:
        """What ``definitions.py`` declares now (not necessarily registered)."""
        return registry.load(self.definitions_path)

    def plan(self) -> registry.Plan:
        """What ``apply`` would change (``tarmac apply --dry-run``)."""
        return registry.plan(self.project, self.declared())

    def apply(self, *, force: bool = False, dry_run: bool = False,
              reason: str | None = None) -> registry.Plan:
        """Register ``definitions.py`` (see ``tarmac apply``)."""
        result = registry.apply(self.project, self.declared(), force=force, dry_run=dry_run,
                                reason=reason)
        if result.applied:
            self._invalidate()
        return result

    def registered(self) -> registry.Definitions:
        """The registered definitions, cached; re-read when the registry changed."""
        now = time.monotonic()
        if self._defs is not None and now - self._checked_at < REFRESH_S:
            return self._defs
        with self._lock:
            stamp = fcat.registry_stamp(self.project.catalog)
            if self._defs is None or stamp != self._stamp:
                current = fcat.current_definitions(self.project.catalog)
                live: dict[str, OnDemandFeatureView] = {}
                if any(k == "on_demand" for k, _ in current) and self.definitions_path.exists():
                    try:
                        live = self.declared().on_demand
                    except UsageError:  # an unapplied, broken edit must not stop serving:
                        live = {}       # its on-demand views refuse to run, the rest serve
                self._defs = registry.from_specs(current, live)
                self._stamp = stamp
            self._checked_at = now
        return self._defs

    def _invalidate(self) -> None:
        self._defs, self._stamp, self._checked_at = None, None, 0.0

    def resolve(self, features: FeatureRefs, *,
                definitions: registry.Definitions | None = None) -> Resolved:
        """A service name, or refs (``view:feature`` or ``view`` for all of its features), as
        the stored views and columns and the on-demand views they mean; ``definitions``
        resolves against other definitions than the registered ones (a reproduction uses the
        versions its run recorded)."""
        return resolve(definitions or self.registered(), features)

    def last_materialization(self, view: str) -> fcat.Materialization | None:
        """The latest materialization run of a stored view (``None`` if it never ran): its
        mode, counts and when it ended. What ``tarmac features list`` shows as freshness."""
        return fcat.last_materialization(self.project.catalog, view)

    def freshness(self, views: Sequence[str] | None = None) -> dict[str, datetime | None]:
        """The newest event time each stored view (all by default) serves online, None for a
        view never materialized: from the materialization's checkpoint, and for a stream view
        also the newest event its stream landed (see ``features.inspect.freshness``). What a
        monitor's ``quality(freshness=...)`` check compares with now.

        >>> p.features.freshness()
        {'signals': None}
        >>> _ = p.features.materialize(["signals"])
        >>> p.features.freshness(["signals"])["signals"].isoformat()
        '2024-01-01T00:00:00+00:00'
        """
        from tarmac.features.inspect import freshness

        return freshness(self, views)

    # -- offline -----------------------------------------------------------------------------

    def training_set(self, entities: EntityFrame, features: FeatureRefs, *,
                     timestamp: str | None = None, label: str | None = None,
                     semantics: Semantics = "event",
                     as_of: Mapping[str, int] | None = None,
                     definitions: registry.Definitions | None = None) -> TrainingSet:
        """One row per entity row, each feature as of that row's ``timestamp``.

        ``entities`` is a pandas or Arrow frame (or SQL over the lake) holding the join keys and
        a time-zone-aware timestamp column (found by itself when there is only one).
        ``semantics='knowledge'`` also hides values recorded after the row's time. ``as_of``
        pins lake tables to versions (time travel: a past training set, rebuilt exactly).

        Example: the ``risk`` feature service's values as of each label's observation time.

        >>> ts = p.features.training_set(
        ...     "SELECT customer_id, observed, churned FROM labels ORDER BY customer_id LIMIT 3",
        ...     "risk", label="churned")
        >>> ts.features, ts.timestamp
        (['a', 'b', 'region'], 'observed')
        >>> frame = ts.to_arrow()
        >>> frame.column_names, frame.num_rows
        (['customer_id', 'observed', 'churned', 'a', 'b', 'region'], 3)
        """
        resolved = self.resolve(features, definitions=definitions)
        return _training_set(self.project, resolved, entities, timestamp=timestamp,
                             label=label, semantics=semantics, as_of=as_of)

    # -- materialization ---------------------------------------------------------------------

    @property
    def online_store(self) -> OnlineStore:
        """The online store of the project (opened on first use, kept until ``close``)."""
        if self._online is None:
            from tarmac.features.online import open_online_store

            # create=False: reading never creates the store (a deleted SQLite file stays
            # absent and online_state says so); materialize's first write creates it
            self._online = open_online_store(self.project.config.online_store,
                                             namespace=self.project.name,
                                             root=self.project.root, create=False)
        return self._online

    def online_state(self) -> OnlineState:
        """Which registered stored views have materialized values in the online store (a
        checkpoint or records) and which do not; ``present`` is False when the store's data
        is gone (a SQLite file deleted or replaced). What a server's ``/ready`` reads."""
        defs = self.registered()
        online = self.online_store
        present = online.present()
        there = set(online.views()) if present else set()
        names = sorted(defs.views)
        return OnlineState(online.url, present, [v for v in names if v in there],
                           [v for v in names if v not in there])

    def materialize(self, views: Sequence[str] | None = None, *, since: datetime | str | None
                    = None, full: bool = False,
                    progress: Callable[[MaterializeProgress], None] | None = None,
                    ) -> list[MaterializeResult]:
        """Copy the latest value of every entity from the offline sources to the online store:
        incrementally (only data files added since the last run) unless ``full``; ``since``
        limits it to rows with an event time at or after that time.

        Example: the first run copies every entity, a rerun with no new data skips.

        >>> [(r.view, r.mode, r.entities) for r in p.features.materialize()]
        [('signals', 'full', 600)]
        >>> [(r.view, r.mode, r.entities) for r in p.features.materialize()]
        [('signals', 'skipped', 0)]
        """
        from tarmac.features.materialize import materialize

        return materialize(self, views, since=since, full=full, progress=progress)

    # -- online ------------------------------------------------------------------------------

    def online(self, features: FeatureRefs, entities: Sequence[Mapping[str, Any]], *,
               now: datetime | None = None) -> OnlineFeatures:
        """The latest values of each entity's features; a value older than its view's ttl is
        returned as null with status ``stale``, an unknown entity's as null with ``missing``.

        ``features`` is a service name or a list of refs; each entity maps the join keys the
        features need (and the request values of on-demand views) to values. One batched read
        of the online store per call, from a plan cached per distinct ``features``: model
        serving calls this per request. Unknown names and missing keys raise ``UsageError``;
        a failing on-demand function raises ``OnDemandError``. Where access is enforced, a
        personal feature reads as its pseudonym (or ``[redacted]``) for a user without
        ``read:pii``, as it does in SQL (see ``_personal``; ``model_inputs`` is the unmasked
        read model serving scores on).

        Example, after ``materialize``:

        >>> _ = p.features.materialize()
        >>> got = p.features.online("risk", [{"customer_id": 1}, {"customer_id": 999_999}])
        >>> got.features, got.rows[0]["region"]
        (['a', 'b', 'region'], 'south')
        >>> got.status[1]
        {'a': 'missing', 'b': 'missing', 'region': 'missing'}
        """
        got, plan = self._read_online(features, entities, now)
        guard = self.project.ledger.guard
        if not guard.enforced:
            return got
        hidden = {out: kind for out, (kind, resource) in self._personal(plan).items()
                  if not guard.allows("read:pii", resource)}
        key = guard.mask_key
        if key is None:  # (never where access is enforced) fail closed: redact, not raw
            hidden, key = dict.fromkeys(hidden, REDACT), b""
        for row in got.rows:
            for out, kind in hidden.items():
                if out in row:
                    row[out] = mask_value(row[out], kind, key)
        return got

    def model_inputs(self, features: FeatureRefs, entities: Sequence[Mapping[str, Any]], *,
                     now: datetime | None = None) -> OnlineFeatures:
        """``online`` without the masking of personal features: what model serving scores on
        (a model needs the values; its answer shows only their status). Not for showing to a
        person: ``POST /features`` and ``tarmac features get`` read through ``online``."""
        return self._read_online(features, entities, now)[0]

    def _read_online(self, features: FeatureRefs, entities: Sequence[Mapping[str, Any]],
                     now: datetime | None) -> tuple[OnlineFeatures, ReadPlan]:
        plan = self._reader.plan(self.registered(), features)
        return self._reader.read(self.online_store, plan, entities,
                                 None if now is None else int(now.timestamp() * 1_000_000)), plan

    def _personal(self, plan: ReadPlan) -> dict[str, tuple[str, str | None]]:
        """The plan's personal outputs, worked out once per plan: a feature tagged personal
        (``pii``, ``email``, ...; see ``tarmac.lake.masking``), every feature of a view tagged
        so, and a feature of a view over a lake table named like one of its personal columns
        (``tarmac tag``). Kept for ``PERSONAL_CACHE_SECONDS``: a tag set in another process
        reaches a running server within that time, as a revoked token does."""
        if plan.personal is not None and \
                time.monotonic() - plan.personal[0] < PERSONAL_CACHE_SECONDS:
            return plan.personal[1]
        found: dict[str, tuple[str, str | None]] = {}
        for part in plan.resolved.parts:
            view = part.view
            resource = f"table:{view.source}" if isinstance(view.source, str) else None
            columns: dict[str, tuple[str, ...]] = {}
            if isinstance(view.source, str):
                dataset = self.project.dataset(view.source)
                columns = {c.name: tuple(c.tags) for c in dataset.columns} if dataset else {}
            for name, out, _type in part.features:
                tags = (*view.tags, *view.feature(name).tags, *columns.get(name, ()))
                kind = mask_kind(tags)
                if kind is not None and out not in part.hidden:
                    found[out] = (kind, resource)
        plan.personal = (time.monotonic(), found)
        return found

    @property
    def streaming(self) -> StreamingFeatures:
        """The stream feature views' incremental side: ``start(source)`` and
        ``apply(source, committed_rows)``, what ``tarmac stream run`` calls after each commit
        (see ``tarmac.features.streaming``)."""
        if self._streaming is None:
            from tarmac.features.streaming import StreamingFeatures

            self._streaming = StreamingFeatures(self.project)
        return self._streaming

    # -- inspection --------------------------------------------------------------------------

    def check(self, features: FeatureRefs, *, sample: int = 100, seed: int = 0,
              model: str | None = None, max_drop: float = 0.25) -> CheckReport:
        """Sample entities: each feature's online coverage (present, null, stale, missing)
        against the training set's (``model``'s stored profile, else offline), and online values
        against the offline point-in-time values at the same moment (see ``features.check``)."""
        from tarmac.features.check import check

        return check(self, features, sample=sample, seed=seed, model=model, max_drop=max_drop)

    def close(self) -> None:
        """Close the online store's connection (reopened on next use)."""
        if self._streaming is not None:
            self._streaming.close()
            self._streaming = None
        if self._online is not None:
            self._online.close()
            self._online = None

