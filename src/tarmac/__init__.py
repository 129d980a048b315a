"""Tarmac: the road from ML prototype to production.

Example::

    import tarmac
    p = tarmac.open("my-project")
    p.lake.write("customers", frame, mode="merge", keys=["customer_id"])
    p.sql("SELECT region, count(*) FROM customers GROUP BY 1").to_pandas()
"""

__version__ = "0.1.0"

from tarmac.errors import TarmacError  # noqa: E402
from tarmac.project import Project, init, open  # noqa: E402  (shadows builtins.open on purpose)

__all__ = ["Project", "TarmacError", "__version__", "init", "open"]
