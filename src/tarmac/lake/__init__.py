"""Delta Lake tables with time travel, committed through the ledger, and SQL over them."""

from tarmac.lake._arrow import storable_type
from tarmac.lake._files import Stager, action_to_dict, rows_in
from tarmac.lake.lake import Lake, WriteResult
from tarmac.lake.sql import query, quote_ident

__all__ = ["Lake", "Stager", "WriteResult", "action_to_dict", "query", "quote_ident", "rows_in",
           "storable_type"]
