"""The demo company behind ``tarmac demo``: Kestrel Mobile, a subscription telco.

``generate()`` writes its deliberately messy, scattered sources (SQLite CRM and
orders, yearly product CSVs, a daily JSON-lines clickstream, support tickets
behind a local paginated HTTP API, late-arriving churn labels), deterministic
for a seed and an as-of date (the demo's own clock).  ``TicketsServer`` serves
the tickets, ``fetch_all_tickets`` pages through them, and ``clean_tables()``
returns the clean, typed tables together with counts of what was dropped or
repaired and why.
"""

from tarmac.demo._clean import CleanResult, clean_tables
from tarmac.demo._generate import DemoSources, default_as_of, generate
from tarmac.demo._tickets_api import PaginationError, TicketsServer, fetch_all_tickets

__all__ = [
    "CleanResult",
    "DemoSources",
    "PaginationError",
    "TicketsServer",
    "clean_tables",
    "default_as_of",
    "fetch_all_tickets",
    "generate",
]
