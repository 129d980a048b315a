"""``p.serving``: predictions, deployments and their status from Python.

``predict`` runs the very code ``POST /v1/predict/{name}`` runs (``Predictions.answer``), in
this process, without a socket: the same routing (champion, sticky canary), the same checks,
the same prediction log. An answer other than 200 raises the error the HTTP status stands for
(``UsageError`` for 404/422, ``BackendUnavailableError`` for 503, ``ServingError`` for 500).

Example::

    p = tarmac.open(".")
    p.serving.predict("churn", entities=[{"customer_id": 10001}])["predictions"][0]["score"]
    p.serving.deploy("churn", canary=4, percent=10)
    p.serving.status("churn")
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tarmac.catalog import MAX_PAGE, all_items
from tarmac.catalog import deployments as dcat
from tarmac.catalog import models as mcat
from tarmac.errors import BackendUnavailableError, TarmacError, UsageError

if TYPE_CHECKING:
    from tarmac.project import Project
    from tarmac.serving.deploy import DeployResult
    from tarmac.serving.predict import Predictions


class ServingError(TarmacError):
    """A prediction failed inside the server's code or the model's (HTTP 500)."""


@dataclass
class EndpointStatus:
    """One endpoint: which versions serve it and, from the prediction log, its traffic."""

    endpoint: str
    champion: int | None
    canary: int | None
    percent: float | None
    shadow: int | None
    updated_at: Any = None
    traffic: dict[str, dict[str, Any]] = field(default_factory=dict)  # "v3 champion" -> figures
    traffic_note: str | None = None
    logged: int | None = None  # predictions in the predictions table (all time)
    pending: int | None = None  # answered, still in some server's log segment

    @property
    def answered(self) -> int | None:
        """Every prediction answered: logged + pending (the log's reconciliation)."""
        return None if self.logged is None or self.pending is None else \
            self.logged + self.pending

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "champion": self.champion, "canary": self.canary,
                "percent": self.percent, "shadow": self.shadow,
                "updated_at": self.updated_at, "traffic": self.traffic,
                "traffic_note": self.traffic_note, "answered": self.answered,
                "logged": self.logged, "pending": self.pending}


class Serving:
    """The serving namespace of a project (``p.serving``)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._predictions: Predictions | None = None

    @property
    def engine(self) -> Predictions:
        """The predict path of this process (built on first use)."""
        if self._predictions is None:
            from tarmac.serving.predict import Predictions

            self._predictions = Predictions(self.project)
        return self._predictions

    def predict(self, name: str, entities: list[dict[str, Any]] | None = None,
                rows: list[dict[str, Any]] | None = None, *,
                request_id: str | None = None) -> dict[str, Any]:
        """Predictions of endpoint ``name`` for ``entities`` (features fetched online) and/or
        ``rows`` (raw feature values): ``{"predictions": [...], "request_id": ...}``."""
        self.project.ledger.guard.check("predict", f"model:{name}")
        data: dict[str, Any] = {}
        if entities is not None:
            data["entities"] = entities
        if rows is not None:
            data["rows"] = rows
        outcome = self.engine.answer(name, data, request_id or uuid.uuid4().hex)
        if outcome.status == 200:
            return outcome.body
        detail = outcome.body.get("detail")
        if isinstance(detail, list):  # field errors
            message = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}"
                                for e in detail[:5])
            raise UsageError(f"predict {name}: {message}")
        hint = outcome.body.get("hint")
        if outcome.status in (404, 422):
            raise UsageError(str(detail), hint=hint)
        if outcome.status == 503:
            raise BackendUnavailableError(str(detail), hint=hint)
        raise ServingError(str(detail), hint=hint)

    def deploy(self, name: str, *, canary: int | None = None, percent: float | None = None,
               shadow: int | None = None, promote_canary: bool = False, abort: bool = False,
               stop_shadow: bool = False, reason: str | None = None) -> DeployResult:
        """Change what serves ``name`` beside its champion (see ``tarmac.serving.deploy``)."""
        from tarmac.serving.deploy import deploy

        result = deploy(self.project, name, canary=canary, percent=percent, shadow=shadow,
                        promote_canary=promote_canary, abort=abort, stop_shadow=stop_shadow,
                        reason=reason)
        if self._predictions is not None:
            self._predictions.routes.refresh(force=True)  # this process sees it at once
        return result

    def history(self, name: str, *, limit: int = 50) -> list[dcat.DeploymentChange]:
        """The endpoint's deployment changes, newest first."""
        return list(dcat.deployment_history(self.project.catalog, name, limit=limit))

    def status(self, name: str | None = None, *, since: str = "1h") -> list[EndpointStatus]:
        """Each endpoint (or one): champion, canary and percent, shadow; its traffic over
        ``since`` computed from the prediction log's table (requests, errors, p99 latency per
        version and role: what the servers flushed, so up to a flush interval behind); and
        the log's reconciliation: answered = logged + pending (still in segments)."""
        catalog = self.project.catalog
        names = sorted(mcat.model_names(catalog))
        if name is not None:
            self.project.models.version(name)  # unknown: the error names the closest
            names = [name]
        champions = {a.model: a.version for a in all_items(
            lambda c: mcat.aliases(catalog, name, limit=MAX_PAGE, cursor=c))
            if a.alias == "champion"}
        totals = self._totals()
        out = []
        for n in names:
            d = dcat.get_deployment(catalog, n)
            st = EndpointStatus(n, champions.get(n), d.canary_version, d.canary_percent,
                                d.shadow_version, d.to_dict()["updated_at"])
            st.traffic, st.traffic_note = self._traffic(n, since)
            if totals is not None:
                got = totals.endpoints.get(n)
                st.logged, st.pending = (got.logged, got.pending) if got else (0, 0)
            out.append(st)
        return out

    def _totals(self) -> Any:
        from tarmac.serving.predlog import log_totals

        try:
            return log_totals(self.project)
        except TarmacError:
            return None

    def _traffic(self, name: str, since: str) -> tuple[dict[str, dict[str, Any]], str | None]:
        from tarmac.serving import _log

        try:
            table = _log.read(self.project, name, since=since)
        except TarmacError as exc:
            return {}, f"no traffic figures: {exc.message}"
        return traffic(table), None

    def predictions(self, name: str, *, since: Any = None, limit: int | None = None) -> Any:
        """The logged predictions of ``name`` (the prediction log's ``read_predictions``)."""
        from tarmac.serving import _log

        self.project.models.version(name)
        return _log.read(self.project, name, since=since, limit=limit)

    def close(self) -> None:
        if self._predictions is not None:
            self._predictions.close()
            self._predictions = None


def traffic(table: Any) -> dict[str, dict[str, Any]]:
    """Requests, errors and p99 latency per version and role, from logged predictions (an
    Arrow table, a pandas frame or a list of dicts with version, role, latency_ms, error)."""
    import numpy as np
    import pandas as pd

    if hasattr(table, "to_pandas"):
        frame = table.to_pandas()
    elif isinstance(table, pd.DataFrame):
        frame = table
    else:
        frame = pd.DataFrame(list(table))
    if frame.empty:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for (version, role), group in frame.groupby(["version", "role"]):
        errors = int(group["error"].notna().sum()) if "error" in group else 0
        latency = group["latency_ms"].dropna().to_numpy() if "latency_ms" in group else []
        out[f"v{version} {role}"] = {
            "version": int(version), "role": str(role), "predictions": len(group),
            "requests": int(group["request_id"].nunique()) if "request_id" in group
            else len(group), "errors": errors,
            "p99_ms": float(np.percentile(latency, 99)) if len(latency) else None}
    return out


__all__ = ["EndpointStatus", "Serving", "ServingError", "traffic"]
