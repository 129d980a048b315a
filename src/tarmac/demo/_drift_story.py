"""The demo's last chapter: the world changes under a served model.

The day after the demo's data ends, Kestrel Mobile raises the monthly price of its premium and
family plans by a quarter. Over the next days (``SHIFT_DAYS``) its customers react, and that
reaction reaches the churn model's inputs through the ordinary path, the sources:

* the CRM: some customers on a raised plan downgrade to standard (new customer versions,
  loaded incrementally by ``p.ingest(["crm"])``), so the served ``plan`` mix moves;
* the clickstream: customers on a raised plan visit the plans, downgrade, cancel and billing
  pages (new daily JSON-lines files, appended by ``p.ingest(["clicks"])``), so
  ``cancel_page_views_30d``, ``support_page_views_30d`` and ``sessions_30d`` move;
* the features are materialized again, so what is served online is the new world.

And churn changes meaning (concept drift): before, premium and family customers hardly left and
a visit to the cancel page meant leaving; now the customers who stay on a raised plan leave in
numbers, the more so the more price-sensitive they are, while many who visited the cancel or
downgrade pages downgraded and stay. The champion, trained on the old world, ranks the new one
worse; a version trained on the new cohort's labels learns it.

The labels arrive weeks late: ``issue_labels`` re-issues the labels file (``data/labels.csv``,
a full refresh) with the cohort observed the day after the shift and loads it, which is what
``tarmac train churn`` then learns from; ``late_labels`` gives the outcome of every served
prediction, by prediction id, for ``tarmac labels ingest`` / ``p.monitoring.ingest_labels``.

Everything is deterministic for the demo's ``(size, seed, as_of)``: the same latent customers
as the generated data (``population``), fresh random streams of their own.

Example (in the demo, after the serving story)::

    shift = shift_world(p, size="small", seed=0, as_of=report.as_of)
    ...                                          # serve traffic: its inputs have drifted
    issued = issue_labels(p, shift)              # weeks later: the new cohort's labels
    labels = late_labels(p, shift, since=served_from, path=root / "data" / "outcomes.csv")
    p.monitoring.ingest_labels(labels, label_column="churned", id_column="prediction_id",
                               table="churn_outcomes")
    p.models.train("churn")                      # learns the new world; gates vs the champion
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tarmac.errors import UsageError

from ._clicks import _PAGES, EVENT_TYPES, _json_lines, session_events
from ._generate import SIZES, default_as_of, population
from ._population import (
    DAY_MS,
    HOUR_MS,
    PLAN_EFFECT,
    PLANS,
    REGION_EFFECT,
    WINDOW_DAYS,
    _ms,
    fmt_date,
    iso_utc,
)

if TYPE_CHECKING:
    from tarmac.project import Project

SHIFT_DAYS = 2  # the days after the demo's as-of day that the new world fills
PRICE_RISE = 0.25  # premium and family: +25% a month
RAISED = ("premium", "family")
DOWNGRADE_TO = "standard"
# the new world's churn (log-odds): the old plan effects still hold (PLAN_EFFECT), but keeping
# a raised plan pulls hard towards leaving, the more the more cancel pages were read about it;
# downgrading resolved it for most. Tuned so the champion clearly decays on both demo seeds
# (AUC about 0.76 -> 0.68 for seed 0, 0.60 for seed 7) and a retrained version reaches ~0.78.
STAY_ON_RAISED = 3.0
SENSITIVITY = 0.4
DOWNGRADED = -0.6
_SALT = 20261206  # the shift's own random streams: the generated data's stay as they were
_CLICK_IDS = 900_000_000  # event and session numbers of the shift's clicks (no clash)

_SHOCK_PAGES = {  # event type -> pages a customer reading about the rise visits
    0: np.array(["/plans", "/plans/compare", "/account/plan/change", "/billing", "/offers"]),
    5: np.array(["/support/billing", "/support/contact", "/support/faq"]),
    6: np.array(["/account/cancel", "/account/cancel/confirm", "/account/plan/downgrade"]),
}
_PAGE, _SUPPORT, _CANCEL = 0, 5, 6


@dataclass(frozen=True)
class Shift:
    """What ``shift_world`` did, and the new cohort's labels it decided (not yet issued).

    ``first_day``..``last_day`` are the days the new world fills (the day after the demo's
    ``as_of`` on); ``observed`` the day after, when the new cohort is observed (labels say
    whether each customer left within the 30 days after it). ``labels`` holds them in the
    labels file's columns: customer_id, churned, label_time, observed_until.
    """

    root: Path
    size: str
    seed: int
    as_of: date
    first_day: date
    last_day: date
    observed: date
    customers: int  # in the new cohort (those the old labels had)
    raised: int  # customers on a raised plan when it rose
    downgraded: int
    clicks: int  # click events written for the shift's days
    price_clicks: int  # of which by customers reading about the rise
    crm_rows: int  # customer versions written (the downgrades)
    churn_before: float  # churn rate of the old cohort
    churn_after: float  # and of the new one
    labels: pa.Table = field(repr=False)
    loaded: list[dict[str, Any]] = field(default_factory=list)
    materialized: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for the demo's story."""
        return (f"{self.first_day}: premium and family plans up {PRICE_RISE:.0%}. Of "
                f"{self.raised:,} customers on them, {self.downgraded:,} downgraded to "
                f"{DOWNGRADE_TO} (CRM); {self.clicks:,} clicks came in over {SHIFT_DAYS} "
                f"days, {self.price_clicks:,} of them on the plans, downgrade, cancel and "
                f"billing pages; churn among the "
                f"{self.customers:,} customers observed on {self.observed} will be "
                f"{self.churn_after:.1%} (it was {self.churn_before:.1%})")


def shift_world(p: Project, *, size: str = "small", seed: int = 0, as_of: date | None = None
                ) -> Shift:
    """Raise the premium and family prices the day after the demo's data ends: write the
    CRM downgrades and the clicks of the next ``SHIFT_DAYS`` days into the demo's sources,
    ingest them (``crm``, ``clicks``) and materialize the features again, so what is served
    from now on is the new world. ``size``, ``seed`` and ``as_of`` must be those the demo's
    data was generated with (``DemoReport.as_of``). Returns a ``Shift`` carrying the new
    cohort's labels, to be issued later (``issue_labels``): labels arrive weeks late.

    Example: ``shift = shift_world(p, size="small", seed=0, as_of=report.as_of)``
    """
    as_of = as_of or default_as_of()
    root = _root(p)
    data = root / "data"
    for need in ("crm.db", "labels.csv", "clicks"):
        if not (data / need).exists():
            raise UsageError(f"{data / need} does not exist: shift_world continues a demo made "
                             "by `tarmac demo` (its data folder is incomplete)")
    if any((data / "clicks").glob("*-pricing.jsonl")):
        raise UsageError(f"the world of the demo in {root} has shifted already (its "
                         "data/clicks has the price change's files): make the demo again "
                         "(`tarmac demo DIR`) to tell the story again")
    pop = population(size, seed, as_of)
    _same_world(data / "labels.csv", pop, size, seed, as_of)
    first = as_of + timedelta(days=1)
    last = as_of + timedelta(days=SHIFT_DAYS)
    start_ms = _ms(first.isoformat())
    end_ms = _ms((last + timedelta(days=1)).isoformat())
    r_world, r_crm, r_clicks, r_labels = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, _SALT]).spawn(4))

    plan = _current_plans(data / "crm.db", pop.customer_id, pop.plan)
    sensitivity = r_world.standard_normal(pop.n)  # how much a price rise hurts, latent
    raised = np.isin(plan, [list(PLANS).index(x) for x in RAISED])
    downgrade = raised & (r_world.random(pop.n) < _sigmoid(-0.5 + 0.3 * sensitivity))
    crm_rows = _write_downgrades(data / "crm.db", pop.customer_id[downgrade], start_ms, end_ms,
                                 r_crm)
    clicks, price_clicks, read = _write_clicks(data / "clicks", pop, raised, downgrade,
                                               sensitivity, start_ms, end_ms, SIZES[size][1],
                                               r_clicks)

    # the new world's churn, in the 30 days after `observed`
    now_plan = np.where(downgrade, list(PLANS).index(DOWNGRADE_TO), plan)
    tenure = (_ms(last.isoformat()) - pop.signup_ms) / DAY_MS
    logit = (-2.7 + 1.1 * pop.intent + PLAN_EFFECT[now_plan] + REGION_EFFECT[pop.region]
             + 0.45 * (tenure < 365)
             + (raised & ~downgrade) * (STAY_ON_RAISED + SENSITIVITY * np.log1p(read))
             + downgrade * DOWNGRADED)
    churned = r_labels.random(pop.n) < _sigmoid(logit)
    labels, before = _cohort(data / "labels.csv", pop.customer_id, churned,
                             last + timedelta(days=1), r_labels)

    loaded = []
    results = p.ingest(["crm", "clicks"])
    results.raise_for_errors()
    for r in results:
        loaded.append({"source": r.source, "table": r.table, "read": r.rows_read,
                       "rows": r.rows_loaded, "quarantined": r.rows_quarantined,
                       "version": r.version})
    materialized = [{"view": m.view, "mode": m.mode, "entities": m.entities,
                     "stale": m.stale} for m in p.features.materialize()]
    after = pc.mean(pc.cast(labels["churned"], pa.float64())).as_py() or 0.0
    return Shift(root, size, seed, as_of, first, last, last + timedelta(days=1),
                 labels.num_rows, int(raised.sum()), int(downgrade.sum()), clicks,
                 price_clicks, crm_rows,
                 before, float(after), labels, loaded, materialized)


def issue_labels(p: Project, shift: Shift) -> dict[str, Any]:
    """Weeks later, the labels: re-issue ``data/labels.csv`` (the ``labels`` source is a full
    refresh) with the cohort observed on ``shift.observed`` and load it, so ``tarmac train
    churn`` learns the new world (its holdout, the latest labels, is the new world too, where
    the champion is judged by ``no_regression``). Returns what was loaded.

    Example: ``issue_labels(p, shift)["rows"]  # 1,940``
    """
    path = shift.root / "data" / "labels.csv"
    shift.labels.to_pandas().to_csv(path, index=False, lineterminator="\n")
    results = p.ingest(["labels"])
    results.raise_for_errors()
    [r] = list(results)
    return {"source": r.source, "table": r.table, "rows": r.rows_loaded,
            "version": r.version, "observed_until": shift.observed.isoformat(),
            "churn_rate": shift.churn_after}


def late_labels(p: Project, shift: Shift, *, since: datetime | None = None,
                endpoint: str = "churn", observed_at: datetime | None = None,
                path: Path | str | None = None) -> pa.Table:
    """The outcome of every prediction ``endpoint`` logged (at or after ``since``) for a
    customer of the new cohort: ``prediction_id``, ``customer_id``, ``churned`` (0/1, as the
    new world decided) and ``observed_at`` (``observed_at``, default now: when the labels
    arrived). A prediction for a customer without a label (an unknown id, or one of the ~3%
    whose label has not arrived) gets none. With ``path`` (``.csv``) the table is also written
    there, for ``tarmac labels ingest PATH --label-column churned --id-column prediction_id``.

    Example::

        labels = late_labels(p, shift, since=served_from)
        p.monitoring.ingest_labels(labels, label_column="churned", id_column="prediction_id",
                                   table="churn_outcomes")
    """
    import duckdb

    if p.lake.latest("predictions") is None:
        raise UsageError("there is no prediction log yet (the predictions table): serve "
                         "the model first, then ask for its late labels")
    when = observed_at or datetime.now(UTC)
    where = ["p.endpoint = $endpoint"]
    params: dict[str, Any] = {"endpoint": endpoint, "at": when}
    if since is not None:
        where.append("p.time >= $since")
        params["since"] = since
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("predictions", p.lake.scan("predictions"))
        con.register("outcomes", shift.labels.select(["customer_id", "churned"]))
        table = con.sql(f"""
            SELECT CAST(p.id AS VARCHAR) AS prediction_id, o.customer_id,
                   CAST(o.churned AS BIGINT) AS churned, CAST($at AS TIMESTAMPTZ) AS observed_at
            FROM predictions p
            JOIN outcomes o ON o.customer_id = TRY_CAST(coalesce(
                json_extract_string(p.request, '$.customer_id'),
                json_extract_string(p.features, '$.customer_id')) AS BIGINT)
            WHERE {" AND ".join(where)}
            ORDER BY p.time, p.id""", params=params).to_arrow_table()
    finally:
        con.close()
    assert table is not None
    table = table.cast(pa.schema([pa.field("prediction_id", pa.string()),
                                  pa.field("customer_id", pa.int64()),
                                  pa.field("churned", pa.int64()),
                                  pa.field("observed_at", pa.timestamp("us", tz="UTC"))]))
    if path is not None:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, Path(path))
    return table


# -- the pieces ---------------------------------------------------------------------------------


def _root(p: Project) -> Path:
    if p.root is None:
        raise UsageError("shift_world needs a project on disk (the demo's folder)")
    return Path(p.root)


def _same_world(labels_csv: Path, pop: Any, size: str, seed: int, as_of: date) -> None:
    """Refuse to continue a world other than the one the demo's data was made from: the
    labels file must hold exactly the population's churn outcomes."""
    import pyarrow.csv as pcsv

    old = pcsv.read_csv(labels_csv, convert_options=pcsv.ConvertOptions(
        include_columns=["customer_id", "churned", "observed_until"],
        column_types={"observed_until": pa.string()}))
    index = old["customer_id"].to_numpy() - pop.customer_id[0]
    inside = (index >= 0) & (index < pop.n)
    same = (bool(inside.all()) and set(old["observed_until"].to_pylist()) == {as_of.isoformat()}
            and bool((pop.churned[index].astype(np.int64) == old["churned"].to_numpy()).all()))
    if not same:
        raise UsageError(f"{labels_csv} was not generated with size={size!r}, seed={seed}, "
                         f"as_of={as_of}: pass those the demo was made with (the demo prints "
                         "them: 'generating ... (small, seed 0, activity up to DAY)')")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _current_plans(crm_db: Path, ids: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Each customer's plan (index into PLANS) in the CRM's latest version of them: the demo
    upgraded some since the data was generated."""
    con = sqlite3.connect(crm_db)
    try:
        rows = con.execute("SELECT customer_id, plan FROM (SELECT customer_id, plan, "
                           "row_number() OVER (PARTITION BY customer_id ORDER BY updated_at "
                           "DESC) AS rn FROM customers) WHERE rn = 1").fetchall()
    finally:
        con.close()
    plan = fallback.copy()
    if rows:
        cid = np.array([r[0] for r in rows], dtype=np.int64)
        name = np.array([r[1] for r in rows])
        index = cid - ids[0]
        known = (index >= 0) & (index < ids.size) & np.isin(name, PLANS)
        order = np.argsort(PLANS)
        plan[index[known]] = order[np.searchsorted(PLANS, name[known], sorter=order)]
    return plan


def _write_downgrades(crm_db: Path, ids: np.ndarray, start_ms: int, end_ms: int,
                      rng: np.random.Generator) -> int:
    """A new version of each downgrading customer (their latest, with the cheaper plan),
    updated at some time in the shift's days: the CRM's incremental cursor picks them up."""
    if ids.size == 0:
        return 0
    at = start_ms + (rng.random(ids.size) * (end_ms - start_ms - HOUR_MS)).astype(np.int64)
    stamps = iso_utc(at).to_pylist()
    con = sqlite3.connect(crm_db)
    try:
        with con:
            con.executemany(
                "INSERT INTO customers (customer_id, name, email, phone, region, plan, "
                "signup_date, updated_at) SELECT customer_id, name, email, phone, region, ?, "
                "signup_date, ? FROM customers WHERE customer_id = ? "
                "ORDER BY updated_at DESC LIMIT 1",
                [(DOWNGRADE_TO, s, int(c)) for s, c in zip(stamps, ids.tolist(), strict=True)])
    finally:
        con.close()
    return int(ids.size)


def _write_clicks(clicks_dir: Path, pop: Any, raised: np.ndarray, downgrade: np.ndarray,
                  sensitivity: np.ndarray, start_ms: int, end_ms: int, per_customer: float,
                  rng: np.random.Generator) -> tuple[int, int, np.ndarray]:
    """The shift's days of clicks: everyone's ordinary sessions, and customers on a raised
    plan reading about it (plans, downgrade, cancel and billing pages), the more the more
    price-sensitive. Written as one file per day named ``<day>-pricing.jsonl`` (the day's
    regular file may exist already: late events are filed by arrival day)."""
    days = (end_ms - start_ms) / DAY_MS
    activity = np.exp(0.5 * pop.engagement - 0.35 * pop.intent)
    activity /= activity.mean()
    ordinary = rng.poisson(per_customer / 4.0 / WINDOW_DAYS * days * activity)
    reads = np.where(raised & (rng.random(pop.n) < _sigmoid(0.8 + 1.2 * sensitivity)),
                     1 + rng.poisson(np.exp(0.8 * sensitivity)), 0)
    sessions = ordinary + reads
    cust = np.repeat(np.arange(pop.n), sessions)
    s = cust.size
    # a customer's ordinary sessions first, then the ones reading about the rise
    shock = np.arange(s) - np.repeat(np.cumsum(sessions) - sessions, sessions) >= ordinary[cust]
    begin = start_ms + (rng.random(s) * (end_ms - start_ms - 2 * HOUR_MS)).astype(np.int64)
    n_events = np.where(shock, 2, 1) + rng.poisson(np.where(shock, 2.0, 3.0))
    sess, at = session_events(rng, begin, n_events)
    e = sess.size
    who = cust[sess]
    hit = shock[sess]
    u = rng.random(e)
    # who will downgrade compares plans (page views); who keeps the plan reads how to cancel
    p_cancel = np.where(downgrade[who], 0.03, np.clip(0.25 + 0.15 * sensitivity[who], 0.05, 0.7))
    general = rng.choice(5, size=e, p=[0.6, 0.15, 0.08, 0.12, 0.05])
    etype = np.where(hit, np.where(u < p_cancel, _CANCEL, np.where(u < p_cancel + 0.2, _SUPPORT,
                                                                    _PAGE)),
                     np.where(u < 0.004, _CANCEL, np.where(u < 0.034, _SUPPORT, general)))
    page = np.full(e, "/", dtype=object)
    pick = rng.integers(0, 1 << 30, e)
    for t in range(EVENT_TYPES.size):  # seven event types, each vectorised
        for pages, sel in ((_SHOCK_PAGES.get(t, _PAGES[t]), (etype == t) & hit),
                           (_PAGES[t], (etype == t) & ~hit)):
            page[sel] = pages[pick[sel] % pages.size]
    order = np.argsort(at, kind="stable")
    events = {"event_id": _CLICK_IDS + np.arange(1, e + 1, dtype=np.int64),
              "customer_id": pop.customer_id[who[order]], "event_type": etype[order],
              "page": page[order], "event_time": at[order],
              "session": _CLICK_IDS + sess[order]}
    day = events["event_time"] // DAY_MS
    clean = np.zeros(e, dtype=bool)
    for d in np.unique(day):
        idx = np.flatnonzero(day == d)
        name = f"{np.datetime64(int(d), 'D')}-pricing.jsonl"
        (clicks_dir / name).write_bytes(_json_lines(events, idx, clean[idx], clean[idx]))
    # per customer: the cancel and downgrade pages read because of the rise
    read = np.bincount(who[hit & (etype == _CANCEL)], minlength=pop.n)
    return int(e), int(hit.sum()), read


def _cohort(labels_csv: Path, ids: np.ndarray, churned: np.ndarray, observed: date,
            rng: np.random.Generator) -> tuple[pa.Table, float]:
    """The new cohort's labels, for the customers the old labels had (the old churn rate is
    returned too), in the labels file's columns."""
    import pyarrow.csv as pcsv

    old = pcsv.read_csv(labels_csv)
    before = pc.mean(pc.cast(old["churned"], pa.float64())).as_py() or 0.0
    cid = old["customer_id"].to_numpy()
    index = cid - ids[0]
    ok = (index >= 0) & (index < ids.size)
    cid, index = cid[ok], index[ok]
    observed_ms = _ms(observed.isoformat())
    label_ms = observed_ms + rng.integers(28, 57, cid.size) * DAY_MS
    table = pa.table({
        "customer_id": pa.array(cid, pa.int64()),
        "churned": pa.array(churned[index].astype(np.int64)),
        "label_time": fmt_date(label_ms),
        "observed_until": pa.array([observed.isoformat()] * cid.size, pa.string()),
    })
    return table, float(before)


__all__ = ["Shift", "issue_labels", "late_labels", "shift_world"]
