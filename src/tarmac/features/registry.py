"""Loading ``definitions.py``, checking it, and registering it: ``tarmac apply``.

``load`` imports the file and collects what it declares; ``plan`` compares that with the catalog
(added, changed, removed, each change spelled out) and flags the changes that would break a
consumer (a training set or model version using a feature that is removed or changes type);
``apply`` checks every view against its source's schema and registers the plan in one ledger
transaction, refusing breaking changes unless forced.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tarmac.catalog import features as fcat
from tarmac.errors import OnDemandError, SchemaConflictError, UsageError
from tarmac.features.definitions import (
    KINDS,
    TYPES,
    Entity,
    Feature,
    FeatureSelection,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    SqlSource,
    StreamFeatureView,
    spec_hash,
    type_of,
)

if TYPE_CHECKING:
    from tarmac.project import Project

DEFINITIONS_FILE = "definitions.py"


@dataclass
class Definitions:
    """Everything a definitions file declares, by kind and name."""

    entities: dict[str, Entity] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    on_demand: dict[str, OnDemandFeatureView] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)

    def add(self, obj: Any, where: str) -> None:
        tables: dict[type, dict[str, Any]] = {Entity: self.entities, FeatureView: self.views,
                                               StreamFeatureView: self.views,
                                               OnDemandFeatureView: self.on_demand,
                                               FeatureService: self.services}
        table = tables[type(obj)]
        known = table.get(obj.name)
        if known is not None and known is not obj and known.spec() != obj.spec():
            raise UsageError(f"{where}: two different {KINDS[type(obj)]}s are named "
                             f"'{obj.name}'", hint="rename one of them")
        table[obj.name] = obj

    def items(self) -> list[tuple[str, str, Any]]:
        """(kind, name, object) of everything declared, entities first."""
        out: list[tuple[str, str, Any]] = []
        for kind, table in (("entity", self.entities), ("view", self.views),
                            ("on_demand", self.on_demand), ("service", self.services)):
            out.extend((kind, name, obj) for name, obj in sorted(table.items()))
        return out

    def view(self, name: str) -> FeatureView | OnDemandFeatureView | None:
        return self.views.get(name) or self.on_demand.get(name)


def load(path: Path) -> Definitions:
    """Import a definitions file and collect its declarations (and what they reference)."""
    module = import_definitions(path)
    found = Definitions()
    for attr, value in vars(module).items():
        if attr.startswith("_"):
            continue
        for obj in _reachable(value):
            found.add(obj, str(path))
    check(found, str(path))
    return found


def import_definitions(path: Path) -> ModuleType:
    """Import a definitions file as a fresh module; errors name the file and the line."""
    if not path.is_file():
        raise UsageError(f"no definitions file at {path}",
                         hint="declare entities and feature views in definitions.py")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"tarmac_definitions_{digest}"  # stable across processes (pickles name it)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up
    try:
        spec.loader.exec_module(module)
    except UsageError as exc:
        raise UsageError(f"{path}{_line(exc, path)}: {exc.message}", hint=exc.hint) from None
    except Exception as exc:
        raise UsageError(f"{path}{_line(exc, path)}: {type(exc).__name__}: {exc}",
                         hint="fix the definitions file and run `tarmac apply` again") from None
    return module


def _line(exc: BaseException, path: Path) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" line {exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve() == path.resolve()]
    return f" line {frames[-1].lineno}" if frames else ""


def _reachable(value: Any) -> Iterable[Any]:
    """The declarations a module-level value is or contains (a service names its views)."""
    if isinstance(value, Entity):
        yield value
    elif isinstance(value, FeatureView):
        yield from value.entities
        yield value
    elif isinstance(value, OnDemandFeatureView):
        for item in value.inputs:
            yield from _reachable(item.view if isinstance(item, FeatureSelection) else item)
        yield value
    elif isinstance(value, FeatureSelection):
        yield from _reachable(value.view)
    elif isinstance(value, FeatureService):
        for sel in value.selections():
            yield from _reachable(sel.view)
        yield value


def check(defs: Definitions, where: str) -> None:
    """Cross-checks: on-demand inputs exist, a service's output names are unique."""
    for odfv in defs.on_demand.values():
        for ref in odfv.input_refs:
            view, feat = ref.split(":")
            source = defs.views.get(view)
            if source is None:
                raise UsageError(f"{where}: on-demand view '{odfv.name}' reads '{ref}' but no "
                                 f"feature view '{view}' is declared")
            source.feature(feat)
    for service in defs.services.values():
        output_names(service.selections(), f"{where}: feature service '{service.name}'")


def output_names(selections: list[FeatureSelection], where: str) -> dict[str, str]:
    """output name -> ``view:feature`` for selections; two views giving one name need a prefix."""
    out: dict[str, str] = {}
    for sel in selections:
        for feat in sel.names:
            name = sel.output(feat)
            if name in out and out[name] != f"{sel.view.name}:{feat}":
                other = out[name].split(":")[0]
                raise UsageError(
                    f"{where}: feature '{name}' comes from both '{other}' and "
                    f"'{sel.view.name}'; the output names would collide",
                    hint=f"give one a prefix: {sel.view.name}.prefixed('{sel.view.name}') or "
                         f"{sel.view.name}[[...]].prefixed('...')")
            out[name] = f"{sel.view.name}:{feat}"
    return out


# -- checking a view against its source ------------------------------------------------------


def source_schema(project: Project, view: FeatureView) -> pa.Schema:
    """The schema of a view's rows as its source yields them now."""
    if isinstance(view.source, SqlSource):
        from tarmac.lake.sql import connect

        con = connect(project.lake, view.source.query)
        try:
            return con.sql(f"SELECT * FROM ({view.source.query}) LIMIT 0").to_arrow_table().schema
        except Exception as exc:
            raise SchemaConflictError(f"feature view '{view.name}': its SQL source fails: "
                                      f"{str(exc).splitlines()[0]}") from None
        finally:
            con.close()
    dt = project.lake.latest(view.source)
    if dt is None:
        raise SchemaConflictError(
            f"feature view '{view.name}' reads lake table '{view.source}', which does not exist "
            f"(tables: {', '.join(project.lake.tables()) or 'none yet'})",
            hint="ingest it first (`tarmac ingest`), or fix the source name")
    return pa.schema(dt.schema().to_arrow())


_COMPATIBLE = {  # declared feature type -> source column kinds that cast to it without loss
    "int64": {"int64", "bool"}, "int32": {"int64", "bool"},
    "float64": {"float64", "int64"}, "float32": {"float64", "int64"},
    "string": {"string"}, "bool": {"bool"}, "timestamp": {"timestamp"},
}


def check_source(view: FeatureView, schema: pa.Schema) -> None:
    """Refuse a view whose source lacks a declared column or holds an incompatible type."""
    problems = []
    cols = {f.name: f.type for f in schema}
    for key in view.join_keys:
        if key not in cols:
            problems.append(f"join key '{key}' is missing")
    for name, what in ((view.timestamp, "timestamp"), (view.created, "created timestamp")):
        if name is None:
            continue
        if name not in cols:
            problems.append(f"{what} column '{name}' is missing")
        elif type_of(cols[name]) != "timestamp":
            problems.append(f"{what} column '{name}' holds {cols[name]}, not timestamps")
    for feat in view.features:
        if feat.name not in cols:
            problems.append(f"feature column '{feat.name}' is missing")
            continue
        kind = type_of(cols[feat.name])
        if kind not in _COMPATIBLE[feat.dtype]:
            problems.append(f"feature '{feat.name}' is declared {feat.dtype} but the source "
                            f"column holds {cols[feat.name]}")
    if problems:
        source = view.source.query if isinstance(view.source, SqlSource) else view.source
        raise SchemaConflictError(
            f"feature view '{view.name}' no longer matches its source ({source[:80]}): "
            + "; ".join(problems) + f" (source columns: {', '.join(cols)})",
            hint="change the definition or the source, then run `tarmac apply`")


def key_types(view: FeatureView, schema: pa.Schema) -> dict[str, str]:
    """Join key -> its value type in the source (requests are coerced to it)."""
    return {k: type_of(schema.field(k).type) or "string" for k in view.join_keys}


# -- plan and apply -------------------------------------------------------------------------


@dataclass
class Change:
    """What applying does to one definition."""

    kind: str
    name: str
    action: str  # add | change | remove | unchanged
    version: int
    details: list[str] = field(default_factory=list)
    breaking: list[str] = field(default_factory=list)
    spec: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "action": self.action,
                "version": self.version, "details": self.details, "breaking": self.breaking}


@dataclass
class Plan:
    """The changes ``apply`` makes, in order; ``applied`` once registered."""

    changes: list[Change]
    applied: bool = False

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action != "unchanged"]

    @property
    def breaking(self) -> list[str]:
        return [b for c in self.changes for b in c.breaking]

    def to_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "changes": [c.to_dict() for c in self.changes]}


def _feature_types(spec: dict[str, Any]) -> dict[str, str]:
    """feature -> type of a view or on-demand view spec (a service's spec has none)."""
    return {f["name"]: f["dtype"] for f in spec.get("features", []) if "dtype" in f}


def _diff(kind: str, old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Human-readable differences, and the refs whose removal or type change may break."""
    details: list[str] = []
    risky: list[str] = []
    name = new.get("name") or old.get("name")
    if kind in ("view", "on_demand"):
        before, after = _feature_types(old), _feature_types(new)
        for feat in sorted(set(after) - set(before)):
            details.append(f"+ feature {feat} ({after[feat]})")
        for feat in sorted(set(before) - set(after)):
            details.append(f"- feature {feat}")
            risky.append(f"{name}:{feat}")
        for feat in sorted(set(before) & set(after)):
            if before[feat] != after[feat]:
                details.append(f"~ feature {feat}: {before[feat]} -> {after[feat]}")
                risky.append(f"{name}:{feat}")
    for key in sorted(set(old) | set(new)):
        if key in ("features", "name", "key_types"):
            continue
        if old.get(key) != new.get(key):
            details.append(f"~ {key}: {_short(old.get(key))} -> {_short(new.get(key))}")
            if key == "join_keys":
                risky.extend(f"{name}:{f}" for f in _feature_types(old))
    return details, risky


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def plan(project: Project, defs: Definitions) -> Plan:
    """Compare the declarations with the registry; flag changes that break a consumer."""
    current = fcat.current_definitions(project.catalog)
    changes: list[Change] = []
    risky: dict[str, Change] = {}
    declared: set[tuple[str, str]] = set()
    for kind, name, obj in defs.items():
        declared.add((kind, name))
        spec = obj.spec()
        if isinstance(obj, StreamFeatureView):  # bound to its stream source: SQL and types
            from tarmac.features.streaming import bind

            obj, schema = bind(project, obj)
            spec = obj.spec()
            if project.lake.latest(spec["streaming"]["table"]) is not None:
                check_source(obj, source_schema(project, obj))  # the generated SQL runs
        elif kind == "view":
            schema = source_schema(project, obj)
            check_source(obj, schema)
            spec["key_types"] = key_types(obj, schema)
        old = current.get((kind, name))
        if old is None:
            changes.append(Change(kind, name, "add", _next_version(project, kind, name),
                                  [f"+ {kind} {name}"], spec=spec))
        elif old.hash == spec_hash(spec):
            changes.append(Change(kind, name, "unchanged", old.version, spec=spec))
        else:
            details, refs = _diff(kind, old.spec, spec)
            change = Change(kind, name, "change", old.version + 1, details, spec=spec)
            changes.append(change)
            for ref in refs:
                risky[ref] = change
    for (kind, name), old in sorted(current.items()):
        if (kind, name) not in declared:
            change = Change(kind, name, "remove", old.version + 1, [f"- {kind} {name}"],
                            spec=old.spec)
            changes.append(change)
            for feat in _feature_types(old.spec):
                risky[f"{name}:{feat}"] = change
    new_types = {f"{c.name}:{f}": t for c in changes if c.action != "remove"
                 for f, t in _feature_types(c.spec or {}).items()}
    for ref, users in fcat.consumers_of(project.catalog, risky).items():
        for consumer, dtype in users:
            now = new_types.get(ref)
            if now == dtype:
                continue  # e.g. the join keys changed but this feature kept its type
            what = "removes it" if now is None else f"changes its type {dtype} -> {now}"
            risky[ref].breaking.append(f"{consumer} uses {ref}; this {what}")
    return Plan(changes)


def _next_version(project: Project, kind: str, name: str) -> int:
    history = fcat.definition_history(project.catalog, kind, name)
    return history[0].version + 1 if history else 1


def apply(project: Project, defs: Definitions, *, force: bool = False,
          dry_run: bool = False, reason: str | None = None) -> Plan:
    """Register the declarations; refuse changes that break a consumer unless ``force``."""
    project.ledger.guard.check("apply")
    result = plan(project, defs)
    if result.breaking and not force:
        raise SchemaConflictError(
            "apply refused: it would break what uses these features:\n  "
            + "\n  ".join(result.breaking),
            hint="keep the features, or pass --force (recorded in the audit trail)")
    if dry_run or not result.pending:
        return result
    actor = project.ledger.actor

    def change(conn: Any) -> None:
        for c in result.pending:
            fcat.insert_definition(conn, kind=c.kind, name=c.name, version=c.version,
                                   spec=c.spec or {}, hash=spec_hash(c.spec or {}),
                                   removed=c.action == "remove", actor=actor)

    details: dict[str, Any] = {"changes": [f"{c.action} {c.kind} {c.name} v{c.version}"
                                           for c in result.pending]}
    if result.breaking:
        details["forced"] = result.breaking
        details["reason"] = reason or "(none given)"
    project.ledger.commit("features.apply", "definitions", details, change=change)
    result.applied = True
    return result


def from_specs(current: dict[tuple[str, str], fcat.Definition],
               on_demand: dict[str, OnDemandFeatureView] | None = None) -> Definitions:
    """Rebuild registered definitions from their specs (on-demand views need their Python
    functions, taken from ``on_demand`` when their code matches what was registered)."""
    defs = Definitions()
    for (kind, name), d in current.items():
        if kind == "entity":
            defs.entities[name] = Entity(name, d.spec["join_keys"], d.spec.get("description", ""))
    for (kind, name), d in current.items():
        if kind != "view":
            continue
        s = d.spec
        entities = [defs.entities.get(e) or Entity(e, s["join_keys"]) for e in s["entities"]]
        source: str | SqlSource = (SqlSource(s["source"]["sql"]) if "sql" in s["source"]
                                   else s["source"]["table"])
        ttl = timedelta(seconds=s["ttl_seconds"]) if s.get("ttl_seconds") else None
        defs.views[name] = _RegisteredView(streaming=s.get("streaming"),
            name=name, entities=entities, source=source, timestamp=s["timestamp"],
            features=[Feature(f["name"], f["dtype"], f.get("description", ""),
                              tuple(f.get("tags", ()))) for f in s["features"]],
            ttl=ttl, created=s.get("created"), description=s.get("description", ""),
            owner=s.get("owner"), tags=tuple(s.get("tags", ())),
            key_types=s.get("key_types", {}))
    for (kind, name), d in current.items():
        if kind != "on_demand":
            continue
        live = (on_demand or {}).get(name)
        if live is not None and live.code_hash() == d.spec.get("code_hash"):
            defs.on_demand[name] = live
        else:
            defs.on_demand[name] = _unavailable(d.spec, live is not None)
    for (kind, name), d in current.items():
        if kind != "service":
            continue
        selections: list[FeatureView | OnDemandFeatureView | FeatureSelection] = []
        for item in d.spec["features"]:
            view = defs.view(item["view"])
            if view is None:
                raise UsageError(f"feature service '{name}' names '{item['view']}', which is "
                                 "not registered", hint="run `tarmac apply`")
            selections.append(FeatureSelection(view, tuple(item["features"]), item["prefix"]))
        defs.services[name] = FeatureService(name, selections, d.spec.get("description", ""),
                                             tuple(d.spec.get("tags", ())))
    return defs


@dataclass(frozen=True)
class _RegisteredView(FeatureView):
    """A view rebuilt from the registry; knows its join keys' value types in the source."""

    key_types: dict[str, str] = field(default_factory=dict)
    # a stream feature view's binding: its source, lake table and window spec (None: batch)
    streaming: dict[str, Any] | None = None

    def spec(self) -> dict[str, Any]:
        out = {**super().spec(), "key_types": self.key_types}
        if self.streaming is not None:
            out["streaming"] = self.streaming
        return out


def _unavailable(spec: dict[str, Any], changed: bool) -> OnDemandFeatureView:
    """A registered on-demand view whose function is missing or changed since apply."""
    why = ("its function changed since `tarmac apply`" if changed
           else f"its function is not in {DEFINITIONS_FILE}")

    def refuse(*_args: Any) -> Any:
        raise OnDemandError(f"on-demand view '{spec['name']}' cannot run: {why}",
                            view=spec["name"],
                            hint="run `tarmac apply` to register the current definitions")

    inputs = []
    for ref in spec["inputs"]:
        view, feat = ref.split(":")
        inputs.append(FeatureSelection(_Named(view), (feat,)))  # type: ignore[arg-type]
    return OnDemandFeatureView(spec["name"], inputs,  # type: ignore[arg-type]
                               [Feature(f["name"], f["dtype"]) for f in spec["request"]],
                               [Feature(f["name"], f["dtype"]) for f in spec["features"]],
                               refuse, spec.get("description", ""))


@dataclass(frozen=True)
class _Named:
    name: str


__all__ = ["DEFINITIONS_FILE", "TYPES", "Change", "Definitions", "Plan", "apply", "check_source",
           "from_specs", "import_definitions", "load", "plan", "source_schema"]
