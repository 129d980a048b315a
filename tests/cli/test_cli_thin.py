"""The CLI is a thin layer over the SDK (issue 12): its commands call SDK methods and
functions, so the web console can make the same calls. No module of ``src/tarmac/cli``
imports the catalog (``tarmac.catalog`` or any of its modules), a private module or private
name of another package, or reaches a project's catalog or engine (``p.catalog``,
``project.catalog``, ``x.engine``): each such query lives behind an SDK method with a
docstring (``Project.datasets``/``dataset``/``info``, ``FeatureStore.last_materialization``,
``Ledger.has_lineage``, ``tarmac.ingest.status.source_status``, ``tarmac.admin``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "src" / "tarmac" / "cli"


def problems(source: str) -> list[str]:
    """What in one CLI module's source goes around the SDK, as ``line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            modules = [(node.module or "", a.name) for a in node.names]
        else:
            modules = []
        for module, name in modules:
            parts = module.split(".")
            if parts[0] != "tarmac" or parts[:2] == ["tarmac", "cli"]:
                continue
            if parts[:2] == ["tarmac", "catalog"] or name == "catalog" and module == "tarmac":
                found.append(f"{node.lineno}: imports the catalog ({module})")
            elif any(p.startswith("_") and not p.startswith("__") for p in parts[1:]) or (
                    name and name.startswith("_") and not name.startswith("__")):
                found.append(f"{node.lineno}: imports a private module or name "
                             f"({module}{'.' + name if name else ''})")
        if isinstance(node, ast.Attribute):
            if node.attr == "catalog" and isinstance(node.value, ast.Name) and \
                    node.value.id in {"p", "project", "proj"}:
                found.append(f"{node.lineno}: reaches the catalog ({node.value.id}.catalog)")
            elif node.attr == "engine":
                found.append(f"{node.lineno}: reaches an engine (.engine)")
            elif node.attr.startswith("_") and not node.attr.startswith("__") and \
                    isinstance(node.value, ast.Name) and node.value.id in {"p", "project"}:
                found.append(f"{node.lineno}: reaches a private attribute "
                             f"({node.value.id}.{node.attr})")
    return found


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_cli_modules_go_through_the_sdk(path: Path) -> None:
    found = problems(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name} goes around the SDK:\n  " + "\n  ".join(found)


@pytest.mark.parametrize("source", [
    "from tarmac.catalog import features as fcat",
    "import tarmac.catalog.sources",
    "from tarmac.catalog._engine import current_revision",
    "from tarmac.lake.sql import _sql_error",
    "def f(p):\n    return p.catalog.count('runs')",
    "def f(p):\n    return p._private",
    "def f(c):\n    return c.engine",
])
def test_the_check_catches_each_way_around(source: str) -> None:
    assert problems(source)


def test_the_check_allows_sdk_calls() -> None:
    assert not problems("from tarmac.cli._output import console\n"
                        "from tarmac.ingest.status import source_status\n"
                        "def f(p):\n    return p.datasets(), p.features.last_materialization('x')")
