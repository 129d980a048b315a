"""Lineage graphs over the ledger's runs, and their export as OpenLineage run events.

A dataset's upstream is the runs that wrote it and, recursively, what those runs read; its
downstream is the runs that read it and what they wrote. OpenLineage events let Marquez or any
OpenLineage consumer replay the same graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tarmac import __version__
from tarmac.catalog import Catalog, Run

Direction = Literal["upstream", "downstream"]
PRODUCER = f"https://github.com/tarmac-ml/tarmac/tree/v{__version__}"
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


@dataclass
class LineageNode:
    """A dataset or a run in a lineage tree."""

    kind: Literal["dataset", "run"]
    name: str
    version: int | None = None
    run: Run | None = None
    children: list[LineageNode] = field(default_factory=list)
    repeated: bool = False  # already shown higher up the tree

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.kind == "dataset":
            d["version"] = self.version
        if self.run is not None:
            d.update(run_id=self.run.id, status=self.run.status,
                     started_at=self.run.started_at.isoformat(), actor=self.run.actor)
        if self.repeated:
            d["repeated"] = True
        d["children"] = [c.to_dict() for c in self.children]
        return d


def lineage(catalog: Catalog, dataset: str, *, direction: Direction = "upstream",
            depth: int = 5, runs_per_dataset: int = 5) -> LineageNode:
    """The lineage tree of a dataset, ``depth`` hops of runs deep.

    Runs are newest first and at most ``runs_per_dataset`` per dataset, so a table appended to
    every hour still draws a readable tree.
    """
    name, _, pinned = dataset.rpartition("@") if ":" in dataset else ("", "", "")
    if pinned.isdigit():  # model:churn@3 - one immutable version
        root = LineageNode("dataset", name, int(pinned))
    else:
        info = catalog.get_dataset(dataset)
        root = LineageNode("dataset", dataset, info.version if info else None)
    seen: set[str] = set()
    _expand(catalog, root, direction, depth, runs_per_dataset, seen)
    return root


def _expand(catalog: Catalog, node: LineageNode, direction: Direction, depth: int,
            per: int, seen: set[str]) -> None:
    if depth <= 0:
        return
    role = "output" if direction == "upstream" else "input"
    # upstream of a version: the runs that wrote it or (a table grows) an earlier version;
    # a model's or training set's version (NAME:...) is whole by itself, both ways
    exact = ":" in node.name
    version = node.version if direction == "upstream" or exact else None
    runs = catalog.get_runs(catalog.runs_touching(node.name, role, limit=per, version=version,
                                                  exact=exact))
    runs.sort(key=lambda r: r.started_at, reverse=True)
    for run in runs:
        rnode = LineageNode("run", run.job, run=run)
        node.children.append(rnode)
        if run.id in seen:
            rnode.repeated = True
            continue
        seen.add(run.id)
        edges = run.inputs if direction == "upstream" else run.outputs
        for dv in edges:
            if dv.dataset == node.name:
                continue  # a merge reads and writes the same table
            child = LineageNode("dataset", dv.dataset, dv.version)
            rnode.children.append(child)
            _expand(catalog, child, direction, depth - 1, per, seen)


def openlineage_events(runs: list[Run], *, namespace: str, lake_uri: str) -> list[dict[str, Any]]:
    """OpenLineage RunEvents (START, then COMPLETE/FAIL) for each run, oldest first."""
    events: list[dict[str, Any]] = []
    for run in sorted(runs, key=lambda r: r.started_at):
        base = {
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT_SCHEMA,
            "run": {"runId": run.id, "facets": {}},
            "job": {"namespace": namespace, "name": run.job, "facets": {}},
        }
        inputs = [_dataset(d.dataset, d.version, lake_uri) for d in run.inputs]
        outputs = [_dataset(d.dataset, d.version, lake_uri) for d in run.outputs]
        events.append({**base, "eventType": "START", "eventTime": run.started_at.isoformat(),
                       "inputs": inputs, "outputs": []})
        if run.ended_at is not None:
            end_type = {"succeeded": "COMPLETE", "failed": "FAIL"}.get(run.status, "ABORT")
            end = {**base, "eventType": end_type, "eventTime": run.ended_at.isoformat(),
                   "inputs": inputs, "outputs": outputs}
            if run.error:
                end["run"] = {"runId": run.id, "facets": {"errorMessage": {
                    "_producer": PRODUCER,
                    "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/"
                                  "ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                    "message": run.error, "programmingLanguage": "python"}}}
            events.append(end)
    return events


def _dataset(name: str, version: int | None, lake_uri: str) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    if version is not None:
        facets["version"] = {
            "_producer": PRODUCER,
            "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/"
                          "DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
            "datasetVersion": str(version),
        }
    return {"namespace": lake_uri, "name": name, "facets": facets}
