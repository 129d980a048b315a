"""Which loaded model versions serve each endpoint now, kept current without a full reload.

A ``Route`` is what serves one endpoint: the champion, an optional canary with its share of
entities, an optional shadow, each a verified ``LoadedModel``. ``Routes`` keeps one per
endpoint that was asked for. Hot reload: ``refresh`` reads ``serving_stamp`` (one cheap catalog
query) and rebuilds the routes only when an alias or a deployment changed; a server calls it from
a background thread every ``POLL_S`` (``start``), the SDK before a prediction when due. New
versions are loaded before the swap, which is a single dict assignment: requests in flight
finish on the route they took, the next ones take the new one, none fails.

A version that fails to load (its artifact's hash does not match, its code cannot be imported)
is not switched to: the route keeps the version it had for that role, the failure is kept for
``/ready`` and ``/metrics`` and audited once (``serving.load_failed``); it is retried every
``RETRY_S``.

Canary assignment is sticky: ``bucket`` hashes the endpoint and the entity key (BLAKE2b) to one
of 10,000 buckets, and a row goes to the canary when its bucket is below ``percent * 100``, so the
same customer always gets the same version and the share holds within a fraction of a percent
over many keys. A row without entity key is assigned by the hash of its request id.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tarmac.catalog import deployments as dcat
from tarmac.catalog import models as mcat
from tarmac.errors import TarmacError

if TYPE_CHECKING:
    from tarmac.models.registry import LoadedModel
    from tarmac.project import Project

log = logging.getLogger("tarmac.serving")

POLL_S = 1.0  # how often a server looks for alias or deployment changes
RETRY_S = 30.0  # how often a version that failed to load is tried again
BUCKETS = 10_000
CHAMPION = "champion"


def bucket(endpoint: str, key: str) -> int:
    """The canary bucket (0 to 9,999) of an entity key on an endpoint: stable everywhere."""
    digest = hashlib.blake2b(f"{endpoint}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True)
class Route:
    """What serves one endpoint now."""

    endpoint: str
    champion: LoadedModel | None
    canary: LoadedModel | None = None
    percent: float = 0.0
    shadow: LoadedModel | None = None
    champion_error: str | None = None  # why there is no champion to serve (503)
    threshold: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", round(self.percent * BUCKETS / 100))

    def pick(self, key: str) -> tuple[LoadedModel, str]:
        """The model (and its role) that scores a row with this key."""
        if self.canary is not None and bucket(self.endpoint, key) < self.threshold:
            return self.canary, "canary"
        assert self.champion is not None
        return self.champion, "champion"

    def versions(self) -> dict[str, int]:
        out = {}
        for role in ("champion", "canary", "shadow"):
            m = getattr(self, role)
            if m is not None:
                out[role] = m.version
        return out


class Routes:
    """The routes of one process (a server's, or an SDK's ``p.serving``)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._routes: dict[str, Route] = {}
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self.failures: dict[tuple[str, int], str] = {}  # load failures not yet resolved
        self._audited: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._checked = 0.0
        self._retried = time.monotonic()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- reading ----------------------------------------------------------------------------

    def get(self, name: str) -> Route | None:
        """The endpoint's route, built on first use; None for a name that is not a model."""
        if self._thread is None:
            self.refresh_if_due()
        route = self._routes.get(name)
        if route is not None:
            return route
        if name not in mcat.model_names(self.project.catalog):
            return None
        with self._lock:
            route = self._routes.get(name)
            if route is None:
                if self._stamp is None:
                    self._stamp = dcat.serving_stamp(self.project.catalog)
                route = self._build(name, None)
                self._routes[name] = route
        return route

    def built(self, name: str) -> bool:
        """Whether the endpoint's route is built already (answering needs no catalog read and
        no model load); no I/O."""
        return name in self._routes

    def known(self) -> list[str]:
        """The model names (for a 404's suggestions)."""
        return list(mcat.model_names(self.project.catalog))

    def all(self) -> dict[str, Route]:
        return dict(self._routes)

    # -- hot reload -------------------------------------------------------------------------

    def start(self) -> None:
        """Poll for changes from a background thread (a server)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="tarmac-routes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(5)

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.refresh()
            except Exception as exc:  # the catalog is away for a moment: keep serving
                log.warning("tarmac serve: cannot check for deployment changes: %s", exc)

    def refresh_if_due(self) -> None:
        if time.monotonic() - self._checked >= POLL_S:
            self.refresh()

    def refresh(self, *, force: bool = False) -> bool:
        """Rebuild the routes if an alias or deployment changed (or ``force``); True if so."""
        self._checked = time.monotonic()
        stamp = dcat.serving_stamp(self.project.catalog)
        retry = bool(self.failures) and self._checked - self._retried >= RETRY_S
        if stamp == self._stamp and not force and not retry:
            return False
        with self._lock:
            if retry:
                self._retried = self._checked
            for name, old in list(self._routes.items()):
                self._routes[name] = self._build(name, old)
            self._stamp = stamp
            wanted = {(r.endpoint, m.version) for r in self._routes.values()
                      for m in (r.champion, r.canary, r.shadow) if m is not None}
            for key in [k for k in self._loaded if k not in wanted]:
                del self._loaded[key]  # versions nobody routes to any more: free them
        return True

    def _build(self, name: str, old: Route | None) -> Route:
        """The route the catalog asks for, each role keeping its old model if the new version
        cannot be loaded."""
        catalog = self.project.catalog
        alias = mcat.get_alias(catalog, name, CHAMPION)
        deployment = dcat.get_deployment(catalog, name)
        champion: LoadedModel | None = None
        error: str | None = f"model '{name}' has no champion"
        moved = (None if alias is None
                 else self.project.ledger.alias_problem(name, CHAMPION, alias.version))
        if moved is not None:  # an alias row edited outside Tarmac: not served
            log.error("tarmac serve: %s", moved)
            champion = old.champion if old else None
            error = f"the champion of '{name}' does not match the audit trail: {moved}"
        elif alias is not None:
            champion, error = self._load(name, alias.version, "champion",
                                         old.champion if old else None)
        canary = shadow = None
        if deployment.canary_version is not None and champion is not None:
            canary, _ = self._load(name, deployment.canary_version, "canary",
                                   old.canary if old else None)
        if deployment.shadow_version is not None:
            shadow, _ = self._load(name, deployment.shadow_version, "shadow",
                                   old.shadow if old else None)
        if canary is not None and champion is not None and canary.version == champion.version:
            canary = None  # a promoted canary, before its deployment row catches up
        return Route(name, champion, canary,
                     deployment.canary_percent or 0.0 if canary is not None else 0.0, shadow,
                     None if champion is not None else error)

    def _load(self, name: str, version: int, role: str, previous: LoadedModel | None
              ) -> tuple[LoadedModel | None, str | None]:
        key = (name, version)
        found = self._loaded.get(key)
        if found is not None:
            return found, None
        try:
            model = self.project.models.get(name, version)
        except Exception as exc:  # a bad artifact, code that no longer imports: keep the old
            why = exc.message if isinstance(exc, TarmacError) else f"{type(exc).__name__}: {exc}"
            self.failures[key] = why
            kept = f"v{previous.version} keeps serving" if previous else "nothing to serve"
            log.error("tarmac serve: %s v%s (%s) failed to load; %s: %s", name, version, role,
                      kept, why)
            self._audit_failure(name, version, role, why, previous)
            if previous is not None:
                return previous, why
            return None, f"{role} v{version} of '{name}' failed to load: {why}"
        self.failures.pop(key, None)
        self._loaded[key] = model
        return model, None

    def _audit_failure(self, name: str, version: int, role: str, why: str,
                       previous: LoadedModel | None) -> None:
        if (name, version) in self._audited:
            return
        self._audited.add((name, version))
        try:
            self.project.ledger.commit(
                "serving.load_failed", f"model:{name}@{version}",
                {"role": role, "error": why[:500], "kept": previous.version if previous else None,
                 "host": socket.gethostname(), "pid": os.getpid()})
        except Exception as exc:  # the audit trail is away: the log line above still says it
            log.error("tarmac serve: cannot audit the load failure of %s v%s: %s", name,
                      version, exc)

    def describe(self) -> dict[str, Any]:
        """Per endpoint, the versions served and the load failures (for /ready)."""
        return {"endpoints": {n: r.versions() for n, r in self._routes.items()},
                "load_failures": [f"{n} v{v}: {why}" for (n, v), why in self.failures.items()]}


__all__ = ["BUCKETS", "POLL_S", "Route", "Routes", "bucket"]
