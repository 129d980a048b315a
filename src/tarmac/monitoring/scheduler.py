"""``tarmac scheduler``: runs every declared monitor on its schedule, one process per project,
and applies the retention policies hourly.

Each monitor's windows end on multiples of its ``every``. On every tick the scheduler reads
``definitions.py`` again (a new or edited monitor is picked up without a restart), and for each
monitor evaluates, oldest first, every window that has ended and has not succeeded yet, back
to the monitor's first window or ``catch_up`` windows, whichever is later: a scheduler that was
down (or killed mid-evaluation) catches up when it comes back, and never evaluates a window
twice, because each window is claimed in the catalog (``claim_window``), the same claim
``tarmac monitor run`` from cron takes. A brand-new monitor starts with the window due now.

Only one scheduler runs per project: it holds an exclusive ``flock`` on
``.tarmac/scheduler.lock`` for its lifetime (released by the kernel when it dies, however it
dies); a second one refuses to start and names the first's pid. SIGTERM and SIGINT stop it
after the evaluation in hand.

Example::

    from tarmac.monitoring.scheduler import Scheduler
    Scheduler(p).run(once=True)        # evaluate what is due now, then return
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tarmac.catalog import monitors as moncat
from tarmac.errors import ConflictError, UsageError
from tarmac.ledger.guard import internal
from tarmac.monitoring.declare import MonitorDefinition
from tarmac.monitoring.monitor import Evaluation, declared_monitors, run_monitor, window_due

if TYPE_CHECKING:
    from tarmac.project import Project

_log = logging.getLogger("tarmac.scheduler")

#: windows a scheduler evaluates at most per monitor when it catches up after downtime
CATCH_UP = 48
LOCK_FILE = "scheduler.lock"


@dataclass
class Tick:
    """What one pass over the monitors did."""

    evaluated: list[Evaluation] = field(default_factory=list)
    skipped: int = 0  # windows another process held
    errors: list[tuple[str, str]] = field(default_factory=list)  # (monitor, error)
    advanced: int = 0  # retraining loops moved on
    retention: int = 0  # rows deleted by retention policies


class SchedulerBusy(ConflictError):
    """Another scheduler holds this project's lock."""


class Scheduler:
    """Evaluates monitors as their windows end (see the module's docstring).

    ``monitors`` limits it to some monitors; ``poll`` is the longest sleep between ticks (a
    tick also happens at every window boundary); ``catch_up`` caps the windows evaluated per
    monitor after downtime; ``clock`` and ``sleep`` are for tests.
    """

    def __init__(self, project: Project, *, monitors: Sequence[str] | None = None,
                 poll: float = 30.0, catch_up: int = CATCH_UP,
                 clock: Callable[[], datetime] | None = None,
                 on_evaluation: Callable[[Evaluation], None] | None = None) -> None:
        if poll <= 0:
            raise UsageError(f"scheduler poll must be > 0 seconds, got {poll!r}")
        if catch_up < 1:
            raise UsageError(f"scheduler catch_up must be >= 1 window, got {catch_up!r}")
        self.project = project
        self.monitors = list(monitors) if monitors else None
        self.poll = poll
        self.catch_up = catch_up
        self.clock = clock or (lambda: datetime.now(UTC))
        self.on_evaluation = on_evaluation
        self.stop = threading.Event()
        self._lock: IO[str] | None = None
        self._last: dict[str, MonitorDefinition] = {}  # what the last pass read

    # -- the lock ---------------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        return self.project.root / ".tarmac" / LOCK_FILE

    def acquire(self) -> None:
        """Take the project's scheduler lock or raise ``SchedulerBusy``."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+")  # noqa: SIM115 - held for the scheduler's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise SchedulerBusy(f"another scheduler (pid {holder}) is running on this project; "
                                "one scheduler per project evaluates every monitor",
                                hint=f"stop it first, or use `tarmac monitor run` for a "
                                     f"one-off evaluation (lock: {self.lock_path})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self, *, once: bool = False, handle_signals: bool = False) -> list[Tick]:
        """Tick until stopped (``once``: one tick). Holds the lock throughout."""
        self.acquire()
        previous: dict[signal.Signals, Any] = {}
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda *_a: self.stop.set())
        ticks: list[Tick] = []
        try:
            while not self.stop.is_set():
                ticks.append(self.tick())
                if once:
                    break
                self.stop.wait(self._pause())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.release()
        return ticks

    def _declared(self) -> dict[str, MonitorDefinition]:
        found = declared_monitors(self.project)
        if self.monitors is None:
            return found
        missing = [m for m in self.monitors if m not in found]
        if missing:
            raise UsageError(f"no monitor named {', '.join(map(repr, missing))} in "
                             f"{self.project.features.definitions_path}")
        return {m: found[m] for m in self.monitors}

    def due(self, definition: MonitorDefinition, now: datetime) -> list[datetime]:
        """The window ends of ``definition`` that have passed and not succeeded, oldest
        first (at most ``catch_up``)."""
        _, last = window_due(definition, now)
        step = definition.every
        first = moncat.first_window_end(self.project.catalog, definition.name)
        if first is None:
            return [last]
        first_end = _EPOCH + timedelta(microseconds=first)
        end = max(min(first_end, last), last - step * (self.catch_up - 1))  # both on the grid
        runs = moncat.monitor_runs(self.project.catalog, definition.name,
                                   limit=self.catch_up + 10, status="succeeded")
        done = {r.window_end for r in runs}
        out = []
        while end <= last:
            if int((end - _EPOCH) / timedelta(microseconds=1)) not in done:
                out.append(end)
            end += step
        return out

    def tick(self) -> Tick:
        """One pass: evaluate every due window of every monitor, then move retraining loops
        on. The scheduler carries out what users with the permission declared (monitors,
        retention policies): its writes are the system's, its reads are checked as its
        token's user."""
        with internal("the scheduler"):
            return self._tick()

    def _tick(self) -> Tick:
        result = Tick()
        try:
            declared = self._declared()
            self._last = declared
        except Exception as exc:  # a broken definitions.py must not kill the scheduler
            _log.error("cannot read the monitors: %s", exc)
            result.errors.append(("definitions", str(exc)[:500]))
            return result
        for name, definition in declared.items():
            if self.stop.is_set():
                break
            now = self.clock()
            for end in self.due(definition, now):
                if self.stop.is_set():
                    break
                try:
                    evaluation = run_monitor(self.project, definition, at=self.clock(),
                                             window_end=end)
                except Exception as exc:  # recorded as a failed run; retried next tick
                    _log.error("monitor %s, window ending %s: %s", name, end.isoformat(), exc)
                    result.errors.append((name, str(exc)[:500]))
                    break
                if evaluation is None:
                    result.skipped += 1
                    continue
                result.evaluated.append(evaluation)
                result.advanced += len(evaluation.advanced)
                _log.info("monitor %s, window ending %s: %s (%d checks, %d failing)", name,
                          end.isoformat(), evaluation.verdict, len(evaluation.rows),
                          len(evaluation.failing))
                if self.on_evaluation is not None:
                    self.on_evaluation(evaluation)
        if not self.stop.is_set():
            result.advanced += self._advance(declared, result)
        if not self.stop.is_set():
            self._retention(result)
        return result

    def _retention(self, result: Tick) -> None:
        """Apply the retention policies not applied in the last hour."""
        try:
            due = [p.table for p in self.project.retention.due(self.clock())]
            if due:
                for applied in self.project.retention.apply(due, now=self.clock()):
                    result.retention += applied.rows
                    _log.info("retention %s: %d rows older than %s deleted", applied.table,
                              applied.rows, applied.before.isoformat())
        except Exception as exc:  # audited where it failed; retried next tick
            _log.error("retention: %s", exc)
            result.errors.append(("retention", str(exc)[:500]))

    def _advance(self, declared: dict[str, MonitorDefinition], result: Tick) -> int:
        """Move on the retraining loops that are waiting (a canary whose time is up), also
        between windows."""
        models = {d.model for d in declared.values()}
        waiting = [lp for lp in moncat.retrain_loops(self.project.catalog,
                                                     states=moncat.OPEN_LOOP_STATES)
                   if lp.model in models]
        if not waiting:
            return 0
        from tarmac.monitoring.loop import advance_loops

        try:
            moved = advance_loops(self.project, declared.values(), now=self.clock())
        except Exception as exc:  # recorded by the loop; retried next tick
            _log.error("retraining loops: %s", exc)
            result.errors.append(("retrain", str(exc)[:500]))
            return 0
        for lp in moved:
            _log.info("retraining %s v%s: %s", lp.model, lp.version, lp.state)
        return len(moved)

    def _pause(self) -> float:
        """Seconds until the next window boundary of any monitor the last pass read (the
        definitions are read once a pass, not again to sleep), at most ``poll``."""
        now = self.clock()
        waits = [self.poll]
        for d in self._last.values():
            _, end = window_due(d, now)
            waits.append(max(0.5, (end + d.every - now).total_seconds()))
        return min(waits)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def run_scheduler(project: Project, **options: Any) -> list[Tick]:
    """``Scheduler(project, **options).run()`` with SIGTERM/SIGINT stopping it cleanly."""
    once = bool(options.pop("once", False))
    return Scheduler(project, **options).run(once=once, handle_signals=True)


__all__ = ["CATCH_UP", "Scheduler", "SchedulerBusy", "Tick", "run_scheduler"]
