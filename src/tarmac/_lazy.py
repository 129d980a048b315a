"""Package attributes that import their module on first use.

``definitions.py`` imports ``tarmac.features`` and ``tarmac.models`` to declare things; it must
not pay for DuckDB, Delta, the catalog or scikit-learn. What the SDK hands back (``FeatureStore``,
``ModelRegistry`` ...) is still exported by those packages, resolved by a module ``__getattr__``
(PEP 562) built here::

    __getattr__ = lazy_exports(__name__, {"FeatureStore": "tarmac.features.store"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving each name of ``where`` from its module when asked."""

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
