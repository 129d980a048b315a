"""DESIGN.md's two rules on how Tarmac's packages depend on each other, checked on the source:

1. no module reaches into another package's private (``_``) modules, nor imports a private
   (``_``) name from another package's module;
2. dependencies point one way: ``cli/console/serving -> monitoring/trace ->
   features/models/gates -> ingest/streams -> lake/catalog/ledger -> config``.

``Project`` (``tarmac.project``) is the composition root the layers receive: any layer may name
it in annotations (under ``if TYPE_CHECKING:``), none may import it at run time. What breaks a
rule today is listed below with its reason, and a listed exception that no longer occurs fails
too, so the list can only shrink.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tarmac"

# top-level name under tarmac -> layer; an import may only point at the same or a lower layer
LAYERS: dict[str, int] = {
    "cli": 7, "console": 7, "serving": 7, "demo": 7,
    # the composition root, the SDK functions over it and the front door (tarmac.open)
    "project": 6, "admin": 6, "": 6,
    "monitoring": 5, "trace": 5, "access": 5, "compute": 5,
    "features": 4, "models": 4, "gates": 4,
    "ingest": 3, "streams": 3,
    # profile: column statistics and PII detection over Arrow and DuckDB, a foundation the
    # catalog (a model's reference profile), the survey and monitoring all read
    "lake": 2, "catalog": 2, "ledger": 2, "profile": 2,
    "config": 1, "errors": 0, "humanize": 0, "faults": 0, "_lazy": 0,
    # signed webhook POSTs with retries: what monitoring alerts and the ledger's anchors send
    "webhooks": 0,
}

# (importing module, imported module[.name]) -> why it is allowed for now
KNOWN_PRIVATE: dict[tuple[str, str], str] = {
    ("tarmac.features", "tarmac._lazy"): "the root package's lazy-export helper, shared by the "
    "package __init__s (private so users do not import it)",
    ("tarmac.models", "tarmac._lazy"): "the root package's lazy-export helper, shared by the "
    "package __init__s (private so users do not import it)",
}
KNOWN_UPWARD: dict[tuple[str, str], str] = {
    ("tarmac.ledger.lineage", "tarmac"): "OpenLineage events name the producer's version, "
    "tarmac.__version__, kept in the root package (which imports nothing heavy)",
    ("tarmac.project", "tarmac.serving.sdk"): "Project.serving is the SDK's door to deployments "
    "and in-process predictions; imported lazily inside the property, and the module imports "
    "no web framework (tests/test_backends.py)",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. tarmac.features.store
    target: str  # the module imported, e.g. tarmac.lake.sql
    name: str | None  # the name taken from it (from X import name), if any
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[Import]:
    """The tarmac imports of one source file, relative ones made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, a.name, None, node.lineno, id(node) in type_only)
                      for a in node.names if a.name.split(".")[0] == "tarmac"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tarmac":
                continue
            for a in node.names:
                if (SRC.parent / target.replace(".", "/") / a.name).is_dir() or \
                        (SRC.parent / target.replace(".", "/") / f"{a.name}.py").exists():
                    found.append(Import(module, f"{target}.{a.name}", None, node.lineno,
                                        id(node) in type_only))  # a module, not a name
                else:
                    found.append(Import(module, target, a.name, node.lineno,
                                        id(node) in type_only))
    return found


def all_imports() -> list[Import]:
    return [i for path in sorted(SRC.rglob("*.py")) for i in imports(path)]


def top(module: str) -> str:
    """``tarmac.features.store`` -> ``features``; ``tarmac`` -> ``""``."""
    return module.split(".")[1] if "." in module else ""


def private_reach(i: Import) -> bool:
    """Whether ``i`` takes a private module, or a private name, of another package."""
    mine = top(i.module)
    if top(i.target) == mine and i.target != "tarmac" and not i.target.startswith("tarmac._"):
        return False  # inside one's own package everything is fair
    parts = i.target.split(".")[1:]
    return any(p.startswith("_") and not p.startswith("__") for p in parts) or bool(
        i.name and i.name.startswith("_") and not i.name.startswith("__"))


def private_violations() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for i in all_imports():
        if private_reach(i):
            private_module = any(p.startswith("_") and not p.startswith("__")
                                 for p in i.target.split(".")[1:])
            target = i.target if private_module else f"{i.target}.{i.name}"
            key = (i.module, target)
            found[key] = f"{i.module}:{i.line} imports {target}"
    return found


def upward_violations() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for i in all_imports():
        src, dst = top(i.module), top(i.target)
        if src == dst:
            continue
        assert src in LAYERS, f"{i.module}: package '{src}' has no layer in LAYERS"
        assert dst in LAYERS, f"{i.target}: package '{dst}' has no layer in LAYERS"
        if LAYERS[dst] <= LAYERS[src]:
            continue
        if dst == "project" and i.type_only:
            continue  # every layer receives the composition root: annotations only
        found[(i.module, i.target)] = (f"{i.module}:{i.line} imports {i.target} "
                                       f"({'type-only' if i.type_only else 'at run time'})")
    return found


def test_no_module_reaches_into_another_packages_private_modules() -> None:
    found = private_violations()
    new = {k: v for k, v in found.items() if k not in KNOWN_PRIVATE}
    assert not new, "private modules or names of another package imported (use or add a " \
                    "public seam):\n  " + "\n  ".join(sorted(new.values()))


def test_dependencies_point_one_way() -> None:
    found = upward_violations()
    new = {k: v for k, v in found.items() if k not in KNOWN_UPWARD}
    assert not new, "imports against the layering of DESIGN.md (cli/console/serving -> " \
                    "monitoring/trace -> features/models/gates -> ingest/streams -> " \
                    "lake/catalog/ledger -> config):\n  " + "\n  ".join(sorted(new.values()))


@pytest.mark.parametrize("known,found", [(KNOWN_PRIVATE, private_violations),
                                         (KNOWN_UPWARD, upward_violations)],
                         ids=["private", "upward"])
def test_known_exceptions_still_occur(known: dict[tuple[str, str], str], found: object) -> None:
    """A fixed exception must leave the list, so the list only ever shrinks."""
    assert callable(found)
    gone = sorted(set(known) - set(found()))
    assert not gone, f"no longer violated, remove from the known exceptions: {gone}"


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    """The rules catch what they are meant to: a private module and a private name of another
    package, and a lower layer importing an upper one at run time."""
    assert private_reach(Import("tarmac.cli._project", "tarmac.catalog._engine", None, 1, False))
    assert private_reach(Import("tarmac.features.store", "tarmac.lake.sql", "_sql_error", 1,
                                False))
    assert not private_reach(Import("tarmac.features.store", "tarmac.features._resolve", None,
                                    1, False))
    assert not private_reach(Import("tarmac.cli._lake", "tarmac.cli._output", None, 1, False))
    assert "lake" in LAYERS and LAYERS["lake"] < LAYERS["features"] < LAYERS["serving"]
    here = imports(SRC / "features" / "store.py")
    assert any(i.target == "tarmac.features._online_read" for i in here)
    assert any(i.target == "tarmac.project" and i.type_only for i in here)
