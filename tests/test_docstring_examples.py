"""The examples in the public API's docstrings run, and say what really happens.

Each listed method's ``>>>`` examples run as doctests against a fresh project built like the
models tests' (``models/conftest.py``): definitions with the ``risk`` feature service and model,
a ``signals`` table of 600 customers and their ``labels``, features applied. The project is
``p`` in the examples. A wrong expected output, or a method left without an example, fails.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from models.conftest import build

# (module, qualified name): the entry points a user meets first
METHODS = [
    ("tarmac.lake.lake", "Lake.write"),  # also the merge entry point: mode="merge", keys=[...]
    ("tarmac.lake.lake", "Lake.read"),
    ("tarmac.project", "Project.sql"),
    ("tarmac.features.store", "FeatureStore.training_set"),
    ("tarmac.features.store", "FeatureStore.materialize"),
    ("tarmac.features.store", "FeatureStore.online"),
    ("tarmac.features.store", "FeatureStore.freshness"),
    ("tarmac.models.registry", "ModelRegistry.train"),
    ("tarmac.models.registry", "ModelRegistry.validate"),
    ("tarmac.models.registry", "ModelRegistry.promote"),
    ("tarmac.models.registry", "ModelRegistry.score"),
    ("tarmac.monitoring.sdk", "Monitoring.drift"),
    ("tarmac.monitoring", "join_labels"),
]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _method(module: str, qualname: str) -> Callable[..., Any]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _examples(module: str, qualname: str, globs: dict[str, Any]) -> doctest.DocTest:
    """The method's own docstring examples (not those of anything it contains)."""
    func = _method(module, qualname)
    found = doctest.DocTestFinder(recurse=False).find(
        func, f"{module}.{qualname}", module=inspect.getmodule(func), globs=globs)
    tests = [t for t in found if t.examples]
    assert len(tests) == 1, f"{module}.{qualname} has no docstring example"
    return tests[0]


@pytest.mark.parametrize(("module", "qualname"), METHODS, ids=[q for _m, q in METHODS])
def test_docstring_examples_run(tmp_path: Path, module: str, qualname: str) -> None:
    p = build(tmp_path / "proj")
    try:
        test = _examples(module, qualname, {"p": p})
        out: list[str] = []
        runner = doctest.DocTestRunner(optionflags=FLAGS)
        results = runner.run(test, out=out.append, clear_globs=False)
    finally:
        p.close()
    assert results.attempted == len(test.examples) > 0
    assert results.failed == 0, "".join(out)


def test_merge_has_an_example() -> None:
    """Merging is ``Lake.write(mode="merge")``: its docstring shows an upsert."""
    test = _examples("tarmac.lake.lake", "Lake.write", {})
    assert any('mode="merge"' in e.source for e in test.examples)


def test_a_wrong_example_fails(tmp_path: Path) -> None:
    """The runner really compares outputs: a docstring with a wrong expectation is caught."""
    p = build(tmp_path / "proj")
    try:
        test = doctest.DocTestParser().get_doctest(
            ">>> p.lake.read('signals').num_rows\n601\n", {"p": p}, "wrong", None, 0)
        runner = doctest.DocTestRunner(optionflags=FLAGS)
        results = runner.run(test, out=lambda _s: None)
    finally:
        p.close()
    assert results.failed == 1
