"""Clickstream of the demo company: JSON lines, one file per arrival day.

Everything is vectorised: sessions and events are expanded with ``np.repeat``,
JSON lines are assembled with Arrow string kernels, and each day's file is
written as one joined buffer.  Messiness injected on purpose:

* ~2% of events arrive 1-3 days late (written into a later day's file), and
  files are ordered by arrival, so event times are not sorted;
* ~1% of ``customer_id`` values are strings (``"10023"``) instead of numbers;
* ~0.1% of events are re-sent duplicates (same ``event_id``);
* a handful of lines are truncated and therefore not valid JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._population import DAY_MS, HOUR_MS, Population, iso_utc, zero_pad

EVENT_TYPES = np.array(
    ["page_view", "search", "add_to_cart", "login", "checkout", "support_page", "cancel_page"]
)
_GENERAL_P = np.array([0.6, 0.15, 0.08, 0.12, 0.05])  # first five types
_SUPPORT, _CANCEL = 5, 6

_PAGES: dict[int, np.ndarray] = {
    0: np.array(
        [
            "/",
            "/plans",
            "/devices",
            "/devices/nimbus-x1",
            "/devices/orca-5g",
            "/account",
            "/account/usage",
            "/billing",
            "/offers",
            "/coverage-map",
        ]
    ),
    1: np.array(
        [
            "/search?q=roaming",
            "/search?q=5g",
            "/search?q=data+boost",
            "/search?q=nimbus",
            "/search?q=router",
            "/search?q=pay+bill",
        ]
    ),
    2: np.array(
        [
            "/cart/add/KM-D001",
            "/cart/add/KM-A003",
            "/cart/add/KM-D003",
            "/cart/add/KM-P003",
            "/cart/add/KM-A006",
        ]
    ),
    3: np.array(["/login"]),
    4: np.array(["/checkout", "/checkout/confirm"]),
    5: np.array(
        [
            "/support",
            "/support/billing",
            "/support/network-outage",
            "/support/contact",
            "/support/faq",
        ]
    ),
    6: np.array(["/account/cancel", "/account/cancel/confirm", "/account/plan/downgrade"]),
}


def session_events(rng: np.random.Generator, starts: np.ndarray, n_events: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The events of sessions starting at ``starts`` (ms), ``n_events[i]`` in session ``i``:
    (each event's session, its time), the first at the session's start and the next ones
    after exponential gaps of 45 s on average."""
    sess = np.repeat(np.arange(starts.size), n_events)
    gaps = rng.exponential(45_000.0, sess.size).astype(np.int64)
    first = np.cumsum(n_events) - n_events
    gaps[first] = 0
    cs = np.cumsum(gaps)
    return sess, starts[sess] + cs - cs[first][sess]


def make_events(
    pop: Population, rng: np.random.Generator, events_per_customer: float
) -> dict[str, np.ndarray]:
    """Draw all click events (as arrays), in event-time order with event ids.

    Unhappy customers (high latent intent) have fewer sessions, fading towards
    the end of the window, and visit support and cancel pages more often.
    """
    events_per_session = 4.0
    activity = np.exp(0.5 * pop.engagement - 0.35 * pop.intent)
    activity /= activity.mean()
    lam = events_per_customer / events_per_session * pop.active_fraction * activity
    n_sessions = rng.poisson(lam)
    sess_cust = np.repeat(np.arange(pop.n), n_sessions)
    s = sess_cust.size
    start = pop.active_start_ms[sess_cust]
    fade = np.exp(0.3 * pop.intent[sess_cust])  # >1 pushes sessions earlier
    span = pop.clock.end_ms - 2 * HOUR_MS - start
    sess_start = start + (rng.random(s) ** fade * span).astype(np.int64)

    n_events = 1 + rng.poisson(events_per_session - 1.0, s)
    ev_sess, ev_time = session_events(rng, sess_start, n_events)
    e = ev_sess.size
    ev_cust = sess_cust[ev_sess]

    h = pop.intent[ev_cust]
    p_cancel = np.clip(0.004 * np.exp(1.1 * h), 0.0, 0.25)
    p_support = np.clip(0.03 * np.exp(0.5 * h), 0.0, 0.3)
    u = rng.random(e)
    general = rng.choice(_GENERAL_P.size, size=e, p=_GENERAL_P)
    etype = np.where(u < p_cancel, _CANCEL, np.where(u < p_cancel + p_support, _SUPPORT, general))
    page_idx = rng.integers(0, 1 << 30, e)
    page = np.empty(e, dtype=object)
    for t, pages in _PAGES.items():  # seven event types, each vectorised
        sel = etype == t
        page[sel] = pages[page_idx[sel] % pages.size]

    order = np.argsort(ev_time, kind="stable")
    return {
        "event_id": np.arange(1, e + 1, dtype=np.int64),
        "customer_id": pop.customer_id[ev_cust[order]],
        "event_type": etype[order],
        "page": page[order],
        "event_time": ev_time[order],
        "session": ev_sess[order],
    }


def write_click_files(
    events: dict[str, np.ndarray], clicks_dir: Path, rng: np.random.Generator
) -> int:
    """Write events as daily JSON-lines files by arrival day; return line count."""
    e = events["event_id"].size
    dup = rng.choice(e, size=max(3, e // 1000), replace=False) if e else np.arange(0)
    idx = np.concatenate([np.arange(e), np.sort(dup)])
    n = idx.size
    late_days = np.where(rng.random(n) < 0.02, rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1]), 0)
    late_days[e:] = np.maximum(late_days[e:], 1)  # re-sent duplicates arrive later
    ev_time = events["event_time"][idx]
    arrival = ev_time + late_days * DAY_MS + rng.exponential(3_000.0, n).astype(np.int64)
    file_day = (ev_time // DAY_MS) + late_days
    order = np.lexsort((arrival, file_day))
    idx, file_day = idx[order], file_day[order]

    as_string = rng.random(n) < 0.01
    broken = np.zeros(n, dtype=bool)
    broken[rng.choice(n, size=min(n, max(5, n // 2000)), replace=False)] = True

    clicks_dir.mkdir(parents=True, exist_ok=True)
    days = np.unique(file_day)
    bounds: Any = np.searchsorted(file_day, np.append(days, days[-1] + 1)) if days.size else []
    for i, day in enumerate(days):
        sl = slice(bounds[i], bounds[i + 1])
        lines = _json_lines(events, idx[sl], as_string[sl], broken[sl])
        path = clicks_dir / f"{np.datetime64(int(day), 'D')}.jsonl"
        path.write_bytes(lines)
    return int(n)


def _json_lines(
    events: dict[str, np.ndarray], idx: np.ndarray, as_string: np.ndarray, broken: np.ndarray
) -> bytes:
    """Render selected events as newline-terminated JSON lines, vectorised."""
    cid = pc.cast(pa.array(events["customer_id"][idx]), pa.string())
    cid = pc.if_else(pa.array(as_string), pc.binary_join_element_wise('"', cid, '"', ""), cid)
    eid = pc.binary_join_element_wise("evt-", zero_pad(events["event_id"][idx], 9), "")
    sid = pc.binary_join_element_wise("sess-", zero_pad(events["session"][idx], 8), "")
    etype = pa.array(EVENT_TYPES[events["event_type"][idx]], pa.string())
    head = pc.binary_join_element_wise(
        '{"event_id":"', eid, '","customer_id":', cid, ',"event_type":"', ""
    )
    full = pc.binary_join_element_wise(
        head,
        etype,
        '","page":"',
        pa.array(events["page"][idx], pa.string()),
        '","event_time":"',
        iso_utc(events["event_time"][idx], unit="ms"),
        '","session_id":"',
        sid,
        '"}\n',
        "",
    )
    cut = pc.binary_join_element_wise(head, pc.utf8_slice_codeunits(etype, 0, 4), "\n", "")
    lines = pc.if_else(pa.array(broken), cut, full)
    joined = pc.binary_join(
        pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines), ""
    )
    return pc.cast(joined, pa.binary())[0].as_py() if len(lines) else b""
