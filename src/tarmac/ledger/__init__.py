"""Lineage and the tamper-evident audit trail: the choke point every write goes through."""

from tarmac.ledger.chain import Verification
from tarmac.ledger.ledger import ActiveRun, Ledger, current_actor
from tarmac.ledger.lineage import LineageNode, lineage, openlineage_events

__all__ = [
    "ActiveRun",
    "Ledger",
    "LineageNode",
    "Verification",
    "current_actor",
    "lineage",
    "openlineage_events",
]
