"""Delta Lake tables with time travel, committed through the ledger, and SQL over them."""

from tarmac.lake.lake import Lake, WriteResult
from tarmac.lake.sql import query

__all__ = ["Lake", "WriteResult", "query"]
