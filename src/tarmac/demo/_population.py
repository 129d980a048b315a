"""The hidden "ground truth" of the demo company, Kestrel Mobile.

Kestrel Mobile is a small mobile-and-broadband subscription business.  Every
demo source (CRM, orders, clicks, tickets, labels) is derived from the same
latent population drawn here, which is what makes churn *learnable*: each
customer has a latent dissatisfaction score, churn is drawn from it (plus plan,
region and tenure effects), and behaviour (sessions, cancel-page visits,
tickets, satisfaction) is drawn from it again with plenty of independent noise.
A model that sees only the behaviour therefore recovers churn well, but not
perfectly (ROC AUC roughly 0.8, not 0.5 and not 1.0).

All times are int64 milliseconds since the Unix epoch, UTC.  The demo carries
its own clock (``Clock``): activity fills the 181 days up to and including its
``as_of`` day, so output depends on the seed and the as-of date, never on the
day it runs, and a demo made today has fresh features online.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

COMPANY = "Kestrel Mobile"

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def _ms(iso: str) -> int:
    """Milliseconds since the epoch for an ISO date/time string (UTC)."""
    return int(np.datetime64(iso, "ms").astype(np.int64))


WINDOW_DAYS = 181  # the activity window's length, whatever its end
DEFAULT_AS_OF = date(2025, 6, 30)  # the clock of the library functions when none is given


@dataclass(frozen=True)
class Clock:
    """The demo's calendar: activity from ``start_ms`` up to ``end_ms`` (exclusive, the day
    after ``as_of``); labels observe customers at ``as_of``. Every date the generators use is
    an offset from these, so moving ``as_of`` moves the whole story by whole days."""

    as_of: date = DEFAULT_AS_OF

    @property
    def end_ms(self) -> int:
        return _ms((self.as_of + timedelta(days=1)).isoformat())

    @property
    def start_ms(self) -> int:
        return self.end_ms - WINDOW_DAYS * DAY_MS

    @property
    def observed_until(self) -> str:
        return self.as_of.isoformat()

    def day(self, offset: int) -> int:
        """The window's start plus ``offset`` days (negative: before the window)."""
        return self.start_ms + offset * DAY_MS

REGIONS = np.array(["North", "South", "East", "West", "Central"])
REGION_P = np.array([0.24, 0.22, 0.2, 0.2, 0.14])
# South lost customers to a competitor's fibre launch; Central is loyal.
REGION_EFFECT = np.array([0.0, 0.5, -0.1, 0.1, -0.4])

PLANS = np.array(["basic", "standard", "premium", "family"])
PLAN_P = np.array([0.36, 0.3, 0.2, 0.14])
# Cheap plans churn more; bundled family plans hardly churn at all.
PLAN_EFFECT = np.array([0.6, 0.05, -0.4, -0.7])

_FIRST_NAMES = (
    "Ava Ben Chloe Dan Ella Finn Grace Hugo Isla Jack Kira Liam Maya Noah Olga "
    "Pablo Quinn Rosa Sam Tara Umar Vera Will Xena Yusuf Zoe Amir Bea Carl Dina "
    "Emil Fatma Gus Hana Ivan Jade Kofi Lena Marco Nora"
)
_FIRST = np.array(_FIRST_NAMES.split())
_LAST_NAMES = (
    "Smith Jones Brown Garcia Miller Davis Lopez Wilson Anderson Thomas Taylor "
    "Moore Martin Lee Perez White Harris Clark Lewis Young Walker Hall Allen King "
    "Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts Carter "
    "Phillips Evans Turner Torres Parker"
)
_LAST = np.array(_LAST_NAMES.split())
_DOMAINS = np.array(["example.com", "example.net", "example.org", "mail.example"])


@dataclass(frozen=True)
class Population:
    """Per-customer latent state; index ``i`` is the same customer everywhere."""

    customer_id: np.ndarray  # int64, public id
    region: np.ndarray  # int index into REGIONS (current value)
    plan: np.ndarray  # int index into PLANS (current value)
    signup_ms: np.ndarray  # int64 signup time
    intent: np.ndarray  # float, latent dissatisfaction incl. the churn decision
    engagement: np.ndarray  # float, churn-independent activity level
    churned: np.ndarray  # bool, cancels within 30 days after the clock's as-of day
    clock: Clock = field(default_factory=Clock)

    @property
    def n(self) -> int:
        return int(self.customer_id.size)

    @property
    def active_start_ms(self) -> np.ndarray:
        """When the customer's activity inside the window can start."""
        return np.maximum(self.signup_ms, self.clock.start_ms)

    @property
    def active_fraction(self) -> np.ndarray:
        """Share of the activity window during which the customer existed."""
        span = self.clock.end_ms - self.clock.start_ms
        return (self.clock.end_ms - self.active_start_ms) / span


def make_population(n: int, rng: np.random.Generator, clock: Clock | None = None
                    ) -> Population:
    """Draw ``n`` customers with their latent churn risk and churn outcome."""
    clock = clock or Clock()
    region = rng.choice(len(REGIONS), size=n, p=REGION_P)
    plan = rng.choice(len(PLANS), size=n, p=PLAN_P)
    recent = rng.random(n) < 0.2
    old_lo, old_hi = clock.day(-2192), clock.day(-1)  # six years before the window
    new_lo, new_hi = clock.start_ms, clock.end_ms - 31 * DAY_MS
    lo = np.where(recent, new_lo, old_lo)
    hi = np.where(recent, new_hi, old_hi)
    signup_day = (lo + rng.random(n) * (hi - lo)) // DAY_MS
    signup_ms = signup_day * DAY_MS + rng.integers(7, 22, n) * HOUR_MS
    signup_ms += rng.integers(0, HOUR_MS, n)
    tenure_days = (_ms(clock.observed_until) - signup_ms) / DAY_MS
    new_customer = tenure_days < 365

    z = rng.standard_normal(n)
    logit = -2.35 + 1.0 * z + PLAN_EFFECT[plan] + REGION_EFFECT[region] + 0.45 * new_customer
    churned = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    # Customers who already decided to leave behave like it (cancel-page
    # visits, angry tickets, fading activity): that is the learnable signal.
    intent = 0.7 * z + 0.65 * churned
    engagement = rng.normal(0.0, 0.55, n)
    return Population(
        customer_id=np.arange(10_001, 10_001 + n, dtype=np.int64),
        region=region,
        plan=plan,
        signup_ms=signup_ms.astype(np.int64),
        intent=intent,
        engagement=engagement,
        churned=churned,
        clock=clock,
    )


def iso_utc(ms: np.ndarray, *, unit: str = "s") -> pa.Array:
    """Format epoch milliseconds as ISO 8601 UTC strings ("...Z"), vectorised.

    ``unit="s"`` gives whole seconds, ``unit="ms"`` keeps milliseconds.  Uses
    Arrow's timestamp->string cast (about 5x faster than ``strftime``).
    """
    values = np.asarray(ms, dtype=np.int64)
    if unit == "s":
        values = values // 1000
    text = pc.cast(pa.array(values, pa.timestamp(unit)), pa.string())  # "YYYY-MM-DD hh:mm:ss"
    return pc.binary_join_element_wise(pc.utf8_replace_slice(text, 10, 11, "T"), "Z", "")


def fmt_date(ms: np.ndarray, fmt: str = "%Y-%m-%d") -> pa.Array:
    """Format epoch milliseconds as dates with a strftime pattern, vectorised."""
    ts = pa.array(np.asarray(ms, dtype=np.int64), pa.timestamp("ms"))
    if fmt == "%Y-%m-%d":
        return pc.cast(pc.cast(ts, pa.date32()), pa.string())
    return pc.strftime(ts, format=fmt)


def zero_pad(values: np.ndarray, width: int) -> pa.Array:
    """Integers as zero-padded decimal strings (vectorised)."""
    return pc.utf8_lpad(pc.cast(pa.array(values, pa.int64()), pa.string()), width, "0")


def crm_rows(pop: Population, rng: np.random.Generator) -> pa.Table:
    """The CRM ``customers`` table: one row per version of each customer.

    About a quarter of customers were updated 1-3 times (plan, region or email
    changed), so the table has several rows per ``customer_id`` and only the
    latest ``updated_at`` is current.  On top of that: NULL emails/phones,
    region spelled in the wrong case, and some signup dates stored US-style.
    """
    n = pop.n
    first = rng.integers(0, _FIRST.size, n)
    last = rng.integers(0, _LAST.size, n)
    name = np.strings.add(np.strings.add(_FIRST[first], " "), _LAST[last])
    local = np.strings.lower(np.strings.add(np.strings.add(_FIRST[first], "."), _LAST[last]))
    local = np.strings.add(local, (pop.customer_id % 1000).astype(str))
    email = np.strings.add(np.strings.add(local, "@"), _DOMAINS[rng.integers(0, 4, n)])
    old_email = np.strings.add(np.strings.add(local, "@old."), _DOMAINS[rng.integers(0, 4, n)])
    phone = np.strings.add(
        np.strings.add("+1-555-", rng.integers(100, 1000, n).astype(str)),
        np.strings.add("-", np.strings.zfill(rng.integers(0, 10_000, n).astype(str), 4)),
    )

    updates = np.where(rng.random(n) < 0.25, rng.integers(1, 4, n), 0)
    end = pop.clock.end_ms
    updates[pop.signup_ms > end - 14 * DAY_MS] = 0
    reps = updates + 1
    c = np.repeat(np.arange(n), reps)
    rows = c.size
    version = np.arange(rows) - np.repeat(np.cumsum(reps) - reps, reps)
    final = version == updates[c]

    lo = np.maximum(pop.signup_ms[c] + DAY_MS, pop.clock.day(-184))
    t = lo + (rng.random(rows) * (end - DAY_MS - lo)).astype(np.int64)
    t = np.where(version == 0, pop.signup_ms[c] + rng.integers(0, HOUR_MS, rows), t)
    t = t[np.lexsort((t, c))]  # ascending within each customer's block

    shift_plan = ~final & (rng.random(rows) < 0.6)
    plan = np.where(shift_plan, (pop.plan[c] + rng.integers(1, 4, rows)) % 4, pop.plan[c])
    shift_region = ~final & (rng.random(rows) < 0.25)
    region = np.where(shift_region, (pop.region[c] + rng.integers(1, 5, rows)) % 5, pop.region[c])
    email_rows = np.where(~final & (rng.random(rows) < 0.35), old_email[c], email[c])

    region_s = REGIONS[region]
    r = rng.random(rows)
    region_s = np.where(r < 0.03, np.strings.lower(region_s), region_s)
    region_s = np.where(r > 0.99, np.strings.upper(region_s), region_s)

    signup = pop.signup_ms[c]
    signup_s = pc.if_else(
        pa.array(rng.random(rows) < 0.04), fmt_date(signup, "%m/%d/%Y"), fmt_date(signup)
    )
    order = np.lexsort((pop.customer_id[c], t))  # export order: by updated_at
    table = pa.table(
        {
            "customer_id": pa.array(pop.customer_id[c], pa.int64()),
            "name": pa.array(name[c], pa.string()),
            "email": pa.array(email_rows, pa.string(), mask=rng.random(rows) < 0.03),
            "phone": pa.array(phone[c], pa.string(), mask=rng.random(rows) < 0.07),
            "region": pa.array(region_s, pa.string()),
            "plan": pa.array(PLANS[plan], pa.string()),
            "signup_date": signup_s,
            "updated_at": iso_utc(t),
        }
    )
    return table.take(pa.array(order))


def labels_rows(pop: Population, rng: np.random.Generator) -> pa.Table:
    """Churn labels, known only 4-8 weeks after the observation window ends.

    ~3% of customers have no label yet (it has not arrived).
    """
    keep = np.flatnonzero(rng.random(pop.n) >= 0.03)
    observed = _ms(pop.clock.observed_until)
    label_ms = observed + rng.integers(28, 57, keep.size) * DAY_MS
    return pa.table(
        {
            "customer_id": pa.array(pop.customer_id[keep], pa.int64()),
            "churned": pa.array(pop.churned[keep].astype(np.int64)),
            "label_time": fmt_date(label_ms),
            "observed_until": pa.array([pop.clock.observed_until] * keep.size, pa.string()),
        }
    )


_TICKET_CATEGORIES = np.array(["billing", "network", "device", "account", "cancellation"])
_PRIORITIES = np.array(["low", "normal", "high", "urgent"])


def ticket_rows(pop: Population, rng: np.random.Generator) -> pa.Table:
    """Support tickets: unhappy customers open more of them and rate them lower."""
    rate = 0.75 * pop.active_fraction * np.exp(0.55 * pop.intent)
    counts = rng.poisson(rate)
    c = np.repeat(np.arange(pop.n), counts)
    m = c.size
    start = pop.active_start_ms[c]
    end = pop.clock.end_ms
    opened = start + (rng.random(m) * (end - HOUR_MS - start)).astype(np.int64)
    order = np.argsort(opened, kind="stable")  # ticket ids follow opening order
    opened, c = opened[order], c[order]

    duration = (rng.lognormal(np.log(18.0), 1.0, m) * HOUR_MS).astype(np.int64)
    closed = opened + duration
    still_open = (closed >= end) | (rng.random(m) < 0.03)
    h = pop.intent[c]
    p_cancel = np.clip(0.06 * np.exp(0.9 * h), 0.0, 0.6)
    base = rng.choice(4, size=m, p=[0.35, 0.3, 0.2, 0.15])
    category = np.where(rng.random(m) < p_cancel, 4, base)
    priority = rng.choice(4, size=m, p=[0.3, 0.5, 0.15, 0.05])
    sat = np.clip(np.rint(3.9 - 0.65 * h + rng.normal(0.0, 1.0, m)), 1, 5).astype(np.int64)
    no_sat = still_open | (rng.random(m) < 0.35)
    return pa.table(
        {
            "ticket_id": pc.binary_join_element_wise("TCK-", zero_pad(np.arange(1, m + 1), 6), ""),
            "customer_id": pa.array(pop.customer_id[c], pa.int64()),
            "opened_at": iso_utc(opened),
            "closed_at": pc.if_else(
                pa.array(still_open), pa.scalar(None, pa.string()), iso_utc(closed)
            ),
            "category": pa.array(_TICKET_CATEGORIES[category], pa.string()),
            "priority": pa.array(_PRIORITIES[priority], pa.string()),
            "satisfaction": pa.array(sat, pa.int64(), mask=no_sat),
        }
    )
