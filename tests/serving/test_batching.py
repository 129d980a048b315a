"""Micro-batching of concurrent predict requests: requests that arrive while the model works are
scored together, each caller still gets exactly its own answer, a failing request fails alone,
and a lone request is not held back. Also the NumPy lane: the same scores as the frame path."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from serving.conftest import build_served
from tarmac.errors import UsageError
from tarmac.serving._batching import AsyncBatcher, Combiner
from tarmac.serving._scoring import numpy_lane
from tarmac.serving.sdk import ServingError

GOOD = {"a": 0.5, "b": -0.25, "region": "north"}

# a python-function model that takes 40 ms a call (so concurrent requests queue behind it),
# counts its calls in a file, and raises on a row with a > 100
SLOW = '''
@model(name="risk", features="risk", label=label("labels", "churned", timestamp="observed"),
       split=time_split(by="known_at"))
def train(data):
    import os
    import time

    import numpy as np

    calls = os.environ["RISK_CALLS_FILE"]

    def score(frame):
        with open(calls, "a") as fh:
            fh.write(f"{len(frame)}\\n")
        time.sleep(0.04)
        if (frame["a"] > 100).any():
            raise ValueError("a is out of range")
        return 1 / (1 + np.exp(-(1.8 * frame["a"] - 1.2 * frame["b"])))
    return score
'''


# -- the combiner -----------------------------------------------------------------------------


def test_concurrent_jobs_are_combined_and_each_gets_its_own_result() -> None:
    seen: list[list[int]] = []

    def double(jobs: list[int]) -> list[int]:
        seen.append(list(jobs))
        time.sleep(0.02)
        return [2 * j for j in jobs]

    combiner: Combiner[int, int] = Combiner(double, max_rows=1000)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(combiner, range(64)))
    assert results == [2 * j for j in range(64)]
    assert sorted(j for batch in seen for j in batch) == list(range(64))  # each once
    assert combiner.jobs == 64 and combiner.batches == len(seen) < 64
    assert max(len(b) for b in seen) > 1


def test_a_lone_job_runs_alone_and_batches_respect_max_rows() -> None:
    sizes: list[int] = []

    def run(jobs: list[int]) -> list[int]:
        sizes.append(sum(jobs))
        time.sleep(0.01)
        return jobs

    combiner: Combiner[int, int] = Combiner(run, max_rows=10)
    assert combiner(3, rows=3) == 3
    assert sizes == [3]  # a lone job runs by itself, with nothing to wait for
    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(lambda r: combiner(r, rows=r), [4] * 24)) == [4] * 24
    assert max(sizes) <= 10  # 4 + 4, never a third
    too_big = combiner(50, rows=50)  # bigger than max_rows alone: still runs, alone
    assert too_big == 50 and sizes[-1] == 50


def test_an_exception_reaches_every_caller_of_its_batch_and_no_other() -> None:
    gate = threading.Event()

    def run(jobs: list[int]) -> list[int]:
        gate.wait(5)
        if -1 in jobs:
            raise RuntimeError("boom")
        return jobs

    combiner: Combiner[int, int] = Combiner(run)
    gate.set()
    with pytest.raises(RuntimeError, match="boom"):
        combiner(-1)
    assert combiner(7) == 7  # the combiner is not left busy


def test_the_async_batcher_combines_what_queues_while_a_batch_runs() -> None:
    import asyncio

    seen: list[list[int]] = []

    def run(jobs: list[int]) -> list[int]:
        seen.append(list(jobs))
        time.sleep(0.02)
        if -1 in jobs:
            raise RuntimeError("boom")
        return [10 * j for j in jobs]

    async def main() -> list[Any]:
        batcher: AsyncBatcher[int, int] = AsyncBatcher(run, max_rows=8)
        got = await asyncio.gather(*(batcher.submit(j) for j in range(20)),
                                   return_exceptions=True)
        lone = await batcher.submit(5)  # nothing queued: runs at once, alone
        failed = await asyncio.gather(batcher.submit(-1), return_exceptions=True)
        return [got, lone, failed[0], batcher.batches]

    got, lone, failed, batches = asyncio.run(main())
    assert got == [10 * j for j in range(20)] and lone == 50
    assert isinstance(failed, RuntimeError)
    # all 20 queued before the first batch ran: batches of at most max_rows, in order
    assert seen == [list(range(8)), list(range(8, 16)), list(range(16, 20)), [5], [-1]]
    assert batches == 5


# -- the predict path -------------------------------------------------------------------------


@pytest.fixture
def slow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from models.conftest import FEATURES

    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("RISK_CALLS_FILE", str(calls))
    p = build_served(tmp_path / "p", versions=1, text=FEATURES + SLOW)
    calls.write_text("")
    yield p, calls
    p.close()


def test_concurrent_requests_are_scored_together_each_answered_alone(slow: Any) -> None:
    p, calls = slow
    rows = [{**GOOD, "a": round(0.1 * i, 2)} for i in range(16)]
    alone = [p.serving.predict("risk", rows=[r])["predictions"][0]["score"] for r in rows[:2]]
    calls.write_text("")
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda r: p.serving.predict("risk", rows=[r]), rows))
    scores = [a["predictions"][0]["score"] for a in answers]
    assert scores[:2] == alone  # batching changes no score
    expected = [1 / (1 + np.exp(-(1.8 * r["a"] - 1.2 * r["b"]))) for r in rows]
    assert scores == pytest.approx(expected)
    assert len({a["request_id"] for a in answers}) == 16  # each its own request id
    batch_sizes = [int(n) for n in calls.read_text().split()]
    assert sum(batch_sizes) == 16  # every row scored once
    assert len(batch_sizes) < 16 and max(batch_sizes) > 1  # and together
    p.serving.engine.log.flush()
    logged = p.sql("SELECT count(*) AS n, count(DISTINCT request_id) AS r FROM predictions "
                   "WHERE role = 'champion'").to_pylist()[0]
    assert logged == {"n": 18, "r": 18}  # 2 alone + 16 batched: each in the log once


def test_concurrent_http_requests_are_batched_on_the_event_loop(slow: Any) -> None:
    import asyncio

    import httpx

    from tarmac.serving import create_app

    p, calls = slow
    app = create_app(p)
    rows = [{**GOOD, "a": round(0.1 * i, 2)} for i in range(12)]
    rows[7] = {**GOOD, "a": 1000.0}  # this one's model call raises

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(*(client.post("/v1/predict/risk", json={"rows": [r]})
                                          for r in rows))

    answers = asyncio.run(main())
    assert [a.status_code for a in answers] == [500 if i == 7 else 200 for i in range(12)]
    assert "risk v1 failed" in answers[7].json()["detail"]
    expected = [1 / (1 + np.exp(-(1.8 * r["a"] - 1.2 * r["b"]))) for r in rows]
    assert [a.json()["predictions"][0]["score"] for i, a in enumerate(answers) if i != 7] == \
        pytest.approx([e for i, e in enumerate(expected) if i != 7])
    sizes = [int(n) for n in calls.read_text().split()]
    assert max(sizes) > 1  # scored together ...
    assert sizes.count(1) >= 12 - 1  # ... and, after the failure, one by one to isolate it


def test_a_failing_request_fails_alone_in_its_batch(slow: Any) -> None:
    p, calls = slow
    rows = [{**GOOD, "a": 0.1 * i} for i in range(8)]
    rows[5] = {**GOOD, "a": 1000.0}

    def ask(row: dict[str, Any]) -> Any:
        try:
            return p.serving.predict("risk", rows=[row])["predictions"][0]["score"]
        except ServingError as exc:
            return exc

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, rows))
    assert isinstance(got[5], ServingError) and "risk v1 failed" in str(got[5])
    assert all(isinstance(s, float) for i, s in enumerate(got) if i != 5)
    with pytest.raises(UsageError, match="must be a number"):  # checked before batching
        p.serving.predict("risk", rows=[{**GOOD, "a": "x"}])


# -- the NumPy lane ---------------------------------------------------------------------------


NUMERIC = '''
signals_num = FeatureView(name="signals_num", entities=[customer], source="signals",
                          timestamp="ev", features=[Feature("a", Float64), Feature("b", Float64)])
num = FeatureService("num", [signals_num])


@model(name="hgb", features="num", label=label("labels", "churned", timestamp="observed"),
       split=time_split(by="known_at"))
def train(data):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(data.X, data.y)
'''


def test_the_numpy_lane_gives_the_frame_paths_scores(tmp_path: Path) -> None:
    from models.conftest import FEATURES, build

    p = build(tmp_path / "p", text=FEATURES + NUMERIC)
    try:
        p.models.train("hgb")
        p.models.promote("hgb", 1, force=True, reason="test")
        model = p.models.get("hgb")
        lane = numpy_lane(model)
        assert lane is not None  # a plain estimator on the signature's numeric columns
        rng = np.random.default_rng(1)
        X = rng.normal(size=(50, 2))
        X[3] = np.nan  # no input at all: no score
        X[4, 0] = np.nan  # one missing: the trees route it
        expected = model.predict_scores(pd.DataFrame(X, columns=["a", "b"]), empty="null")
        got = lane(X)
        assert np.array_equal(got, np.asarray(expected, dtype=float), equal_nan=True)
        assert np.isnan(got[3]) and not np.isnan(got[4])
        # and the endpoint answers with those scores
        rows = [{"a": float(a), "b": float(b)} for a, b in X[:3]]
        answer = p.serving.predict("hgb", rows=rows)
        assert [x["score"] for x in answer["predictions"]] == pytest.approx(list(got[:3]))
        # a pipeline (the risk model one-hot encodes its region) scores through the frame
        p.close()
        p = build_served(tmp_path / "q", versions=1)
        assert numpy_lane(p.models.get("risk")) is None
    finally:
        p.close()


def test_a_name_without_a_built_route_is_looked_up_off_the_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown endpoint name (or one not loaded yet) needs the catalog, perhaps a model
    load: that never runs on the event loop, whatever the body's size."""
    import asyncio

    import httpx

    from tarmac.serving import _routes, create_app

    p = build_served(tmp_path / "p", versions=1)
    app = create_app(p)
    seen: list[bool] = []
    original = _routes.mcat.model_names

    def model_names(catalog: Any) -> Any:
        seen.append(threading.current_thread() is threading.main_thread())
        return original(catalog)

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            monkeypatch.setattr(_routes.mcat, "model_names", model_names)
            got = [(await client.post(f"/v1/predict/{name}", json={"rows": [GOOD]})).status_code
                   for name in ("nosuch", "rsk", "risk")]
            return got

    try:
        statuses = asyncio.run(main())  # the loop runs in the main thread
    finally:
        p.close()
    assert statuses == [404, 404, 200]
    assert seen and not any(seen)  # every catalog lookup ran on a worker thread
