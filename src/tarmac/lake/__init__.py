"""Delta Lake tables with time travel, committed through the ledger, and SQL over them.

Users touch ``Lake`` (as ``project.lake``), get back ``WriteResult``, and query with ``query``
(SQL text quoted by ``quote_ident`` / ``literal_list``). Other packages that stage files for an
atomic commit use the public
``tarmac.lake.staging`` module, and ``tarmac.lake.types`` for the types the lake stores.
"""

from tarmac.lake._quote import literal_list, quote_ident
from tarmac.lake.lake import Lake, WriteResult
from tarmac.lake.sql import query

__all__ = ["Lake", "WriteResult", "literal_list", "query", "quote_ident"]
