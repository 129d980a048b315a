"""Delta Lake tables with time travel, committed through the ledger, and SQL over them.

Users touch ``Lake`` (as ``project.lake``), get back ``WriteResult``, and query with ``query`` /
``quote_ident``. Other packages that stage files for an atomic commit use the public
``tarmac.lake.staging`` module, and ``tarmac.lake.types`` for the types the lake stores.
"""

from tarmac.lake.lake import Lake, WriteResult
from tarmac.lake.sql import query, quote_ident

__all__ = ["Lake", "WriteResult", "query", "quote_ident"]
