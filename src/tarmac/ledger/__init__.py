"""Lineage and the tamper-evident audit trail: the choke point every write goes through."""

from tarmac.ledger.chain import Verification, batch_digest
from tarmac.ledger.ledger import ActiveRun, AuditEntry, Ledger, current_actor
from tarmac.ledger.lineage import LineageNode, lineage, openlineage_events

__all__ = [
    "ActiveRun",
    "AuditEntry",
    "Ledger",
    "LineageNode",
    "Verification",
    "batch_digest",
    "current_actor",
    "lineage",
    "openlineage_events",
]
