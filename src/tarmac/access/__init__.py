"""Access and personal data: erasure of a data subject (``erase``) and retention policies
(``Retention``, ``p.retention``); who may do what in ``policy`` (roles, grants, protected
aliases), ``identity`` (users, tokens) and ``approvals``; masking is the engine's
(``tarmac.lake.masking``).

Example::

    from tarmac.access import erase
    erase(p, "customer_id=10001", reason="GDPR art. 17 request #123", dry_run=True).tables
"""

from tarmac.access.erase import ErasedTable, Erasure, erase, subject_hash
from tarmac.access.retention import Applied, Retention

__all__ = ["Applied", "ErasedTable", "Erasure", "Retention", "erase", "subject_hash"]
