"""Adaptive micro-batching of concurrent requests: ``Combiner(fn, max_rows)``.

Callers on several threads each hand in one job; whoever finds the combiner idle becomes the
leader, takes every job queued meanwhile (up to ``max_rows`` rows) and runs ``fn`` once over
them, then hands each caller its own result. Nobody waits for a timer: a lone request runs at
once (no latency added at concurrency 1), and under load the requests that arrive while the
model works are scored together in the next call, which is where a tree ensemble's per-call
cost (one Python step per tree, input validation) is paid once instead of once per request.

This is flat combining (Hendler et al., 2010) over a condition variable, written here because
the serving threads are the threadpool's: a batching library would add a queue and a thread
hop per request, the very overhead this removes.

Example::

    scores = Combiner(lambda jobs: [model(job) for job in jobs], max_rows=256)
    scores(job, rows=1)     # from any number of threads at once
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result", "rows")

    def __init__(self, item: T, rows: int) -> None:
        self.item, self.rows = item, rows
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class Combiner(Generic[T, R]):
    """Runs ``fn`` over the jobs of concurrent callers in one call (see the module's doc).

    ``fn`` gets a list of jobs and returns one result per job, in order; an exception it raises
    is raised to every caller of that batch (``fn`` isolates per-job failures itself)."""

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], *, max_rows: int = 256) -> None:
        self.fn = fn
        self.max_rows = max_rows
        self._cv = threading.Condition()
        self._queue: deque[_Slot[T, R]] = deque()
        self._busy = False
        self.batches = 0  # calls of fn, for tests and the benchmark
        self.jobs = 0

    def __call__(self, item: T, *, rows: int = 1) -> R:
        slot: _Slot[T, R] = _Slot(item, rows)
        with self._cv:
            self._queue.append(slot)
        while True:
            with self._cv:
                while self._busy and not slot.done:
                    self._cv.wait()
                if slot.done:
                    return self._result(slot)
                self._busy = True  # the leader: take what is queued, oldest first
                batch: list[_Slot[T, R]] = []
                total = 0
                while self._queue and (not batch or
                                       total + self._queue[0].rows <= self.max_rows):
                    batch.append(self._queue.popleft())
                    total += batch[-1].rows
            try:
                self._run(batch)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _run(self, batch: list[_Slot[T, R]]) -> None:
        try:
            results = self.fn([s.item for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} jobs gave {len(results)} results")
        except BaseException as exc:
            for s in batch:
                s.error, s.done = exc, True
        else:
            for s, r in zip(batch, results, strict=True):
                s.result, s.done = r, True
        self.batches += 1
        self.jobs += len(batch)

    @staticmethod
    def _result(slot: _Slot[T, R]) -> R:
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]




class AsyncBatcher(Generic[T, R]):
    """The same combining for callers on one event loop: ``await batcher.submit(job)``.

    Requests wait as futures on the loop, not as blocked threads: one worker thread at a time
    runs ``fn`` over what queued while the previous batch ran, so a request costs no thread
    hop of its own and no thread wakes up to hand it its answer. Not thread-safe: every
    ``submit`` comes from the loop the batcher first ran on."""

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], *, max_rows: int = 256) -> None:
        self.fn = fn
        self.max_rows = max_rows
        self._queue: deque[tuple[T, int, asyncio.Future[R]]] = deque()
        self._draining = False
        self._task: asyncio.Future[None] | None = None
        self.batches = 0
        self.jobs = 0

    async def submit(self, item: T, *, rows: int = 1) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, rows, future))
        if not self._draining:
            self._draining = True
            self._task = asyncio.ensure_future(self._drain())  # held: tasks are weakly kept
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch: list[tuple[T, int, asyncio.Future[R]]] = []
                total = 0
                while self._queue and (not batch or total + self._queue[0][1] <= self.max_rows):
                    batch.append(self._queue.popleft())
                    total += batch[-1][1]
                try:
                    results = await run_in_threadpool(self.fn, [b[0] for b in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"a batch of {len(batch)} jobs gave "
                                           f"{len(results)} results")
                except Exception as exc:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                except BaseException:  # cancelled (the loop stops): no caller left hanging
                    for _, _, future in batch:
                        future.cancel()
                    raise
                else:
                    for (_, _, future), result in zip(batch, results, strict=True):
                        if not future.done():  # its caller may have gone (cancelled)
                            future.set_result(result)
                self.batches += 1
                self.jobs += len(batch)
        finally:
            self._draining = False
            if self._queue:  # left only when this task was cancelled (the loop stops)
                for _, _, future in self._queue:
                    future.cancel()
                self._queue.clear()


__all__ = ["AsyncBatcher", "Combiner"]
