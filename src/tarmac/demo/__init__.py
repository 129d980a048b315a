"""The demo company behind ``tarmac demo``: Kestrel Mobile, a subscription telco.

``generate()`` writes its deliberately messy, scattered sources (SQLite CRM and
orders, yearly product CSVs, a daily JSON-lines clickstream, support tickets
behind a local paginated HTTP API, late-arriving churn labels), deterministic
for a seed and an as-of date (the demo's own clock).  ``TicketsServer`` serves
the tickets, ``fetch_all_tickets`` pages through them, and ``clean_tables()``
returns the clean, typed tables together with counts of what was dropped or
repaired and why. ``WebhookReceiver`` is a local endpoint the monitor's alerts are sent to;
``shift_world``, ``issue_labels`` and ``late_labels`` tell the story's last chapter (a price
rise drifts the served inputs, late labels show the champion decaying, retraining learns it).
"""

from tarmac.demo._clean import CleanResult, clean_tables
from tarmac.demo._drift_story import Shift, issue_labels, late_labels, shift_world
from tarmac.demo._generate import DemoSources, default_as_of, generate, population
from tarmac.demo._receiver import Received, WebhookReceiver
from tarmac.demo._tickets_api import PaginationError, TicketsServer, fetch_all_tickets

__all__ = [
    "CleanResult",
    "DemoSources",
    "PaginationError",
    "Received",
    "Shift",
    "TicketsServer",
    "WebhookReceiver",
    "clean_tables",
    "default_as_of",
    "fetch_all_tickets",
    "generate",
    "issue_labels",
    "late_labels",
    "population",
    "shift_world",
]
