"""Tarmac: the road from ML prototype to production.

Example::

    import tarmac
    p = tarmac.open("my-project")
    p.lake.write("customers", frame, mode="merge", keys=["customer_id"])
    p.sql("SELECT region, count(*) FROM customers GROUP BY 1").to_pandas()

The engines (Delta, DuckDB, SQLAlchemy) load on first use, so ``import tarmac`` and
``tarmac --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tarmac.errors import TarmacError

__version__ = "0.1.0"
__all__ = ["Project", "TarmacError", "__version__", "init", "open"]

if TYPE_CHECKING:
    from tarmac.project import Project, init, open  # noqa: A004


def __getattr__(name: str) -> Any:
    if name in ("Project", "init", "open"):
        from tarmac import project

        return getattr(project, name)
    raise AttributeError(f"module 'tarmac' has no attribute {name!r}")
