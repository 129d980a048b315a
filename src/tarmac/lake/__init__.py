"""Delta Lake tables with time travel, committed through the ledger, and SQL over them.

Users touch ``Lake`` (as ``project.lake``), get back ``WriteResult``, and query with ``query``
(SQL text quoted by ``quote_ident`` / ``literal_list``). Writers that must land exactly once
(batch loads, stream sinks, the prediction log) commit through ``Committer`` with a saved
``CommitPlan`` of ``TableCommit`` steps (see ``tarmac.lake.commit``). Other packages that
stage files themselves use the public ``tarmac.lake.staging`` module, and
``tarmac.lake.types`` for the types the lake stores.
"""

from tarmac.lake._quote import literal_list, quote_ident, quote_literal
from tarmac.lake.commit import CommitOutcome, CommitPlan, Committer, TableCommit
from tarmac.lake.lake import Lake, WriteResult
from tarmac.lake.sql import query

__all__ = ["CommitOutcome", "CommitPlan", "Committer", "Lake", "TableCommit", "WriteResult",
           "literal_list", "query", "quote_ident", "quote_literal"]
