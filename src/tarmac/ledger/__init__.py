"""Lineage and the tamper-evident audit trail: the choke point every write goes through.

The trail is hash-chained; with an audit key (``keys``) every record is also keyed, its head is
published to anchors outside the project (``anchors``; when: ``anchoring``), and
``Ledger.verify`` replays the governed state (aliases, deployments, validations) from it
(``replay``); ``Ledger.export`` writes it out for a SIEM (``export``).
"""

from tarmac.ledger.anchors import Anchor, AnchorPolicy
from tarmac.ledger.chain import Verification, batch_digest
from tarmac.ledger.export import AuditExport
from tarmac.ledger.keys import AuditKey, KeySetting
from tarmac.ledger.ledger import ActiveRun, AuditEntry, Ledger, current_actor
from tarmac.ledger.lineage import LineageNode, lineage, openlineage_events

__all__ = [
    "ActiveRun",
    "Anchor",
    "AnchorPolicy",
    "AuditEntry",
    "AuditExport",
    "AuditKey",
    "KeySetting",
    "Ledger",
    "LineageNode",
    "Verification",
    "batch_digest",
    "current_actor",
    "lineage",
    "openlineage_events",
]
