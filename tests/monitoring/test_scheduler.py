"""``tarmac scheduler``: every window evaluated once, in order, across restarts and kills; one
scheduler per project."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from models.conftest import build, definitions
from monitoring.monitor_data import traffic
from tarmac.catalog import monitors as moncat
from tarmac.monitoring.results import read_results
from tarmac.monitoring.scheduler import Scheduler, SchedulerBusy
from tarmac.project import Project

AT = datetime(2026, 6, 1, 12, 10, tzinfo=UTC)
DRIVER = Path(__file__).with_name("scheduler_driver.py")
TARMAC = str(Path(sys.executable).with_name("tarmac"))

MONITOR = '''
from tarmac.monitoring.declare import monitor, slo
risk_monitor = monitor("risk", window="2h", every="1h", quality=None,
                       slo=slo(error_rate=0.05))
'''


@pytest.fixture
def sched(tmp_path: Path) -> Iterator[Project]:
    p = build(tmp_path / "proj")
    version = p.models.train("risk").version
    p.models.promote("risk", version, force=True, reason="scheduler tests")
    (p.root / "definitions.py").write_text(definitions() + MONITOR)
    traffic(p, AT - timedelta(hours=6), 600, span=timedelta(hours=6), seed=1)
    yield p
    p.close()


def ends(p: Project) -> list[datetime]:
    return sorted(datetime.fromtimestamp(r.window_end / 1e6, UTC)
                  for r in moncat.monitor_runs(p.catalog, "risk", status="succeeded"))


def test_first_pass_evaluates_the_window_due_and_the_next_pass_nothing(sched: Project) -> None:
    now = [AT]
    s = Scheduler(sched, clock=lambda: now[0])
    ticks = s.run(once=True)
    assert [e.window_end for e in ticks[0].evaluated] == [datetime(2026, 6, 1, 12, tzinfo=UTC)]
    assert s.run(once=True)[0].evaluated == []
    # three hours later (the scheduler was down): the three windows missed, oldest first
    now[0] = AT + timedelta(hours=3)
    caught = s.run(once=True)[0].evaluated
    assert [e.window_end.hour for e in caught] == [13, 14, 15]
    assert ends(sched) == [datetime(2026, 6, 1, h, tzinfo=UTC) for h in (12, 13, 14, 15)]


def test_catch_up_is_bounded(sched: Project) -> None:
    now = [AT]
    Scheduler(sched, clock=lambda: now[0]).run(once=True)
    now[0] = AT + timedelta(days=2)
    caught = Scheduler(sched, clock=lambda: now[0], catch_up=5).run(once=True)[0].evaluated
    assert len(caught) == 5 and caught[-1].window_end == datetime(2026, 6, 3, 12, tzinfo=UTC)


def test_a_scheduler_killed_mid_window_evaluates_it_once_after_restart(sched: Project) -> None:
    # the first window, then a kill after the next window's results are written
    Scheduler(sched, clock=lambda: AT).run(once=True)
    later = AT + timedelta(hours=1)
    killed = subprocess.run([sys.executable, str(DRIVER), str(sched.root), later.isoformat(),
                             "monitor.after_results"], capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -9, killed.stderr
    running = moncat.monitor_runs(sched.catalog, "risk", status="running")
    assert len(running) == 1  # claimed by a process that is gone, its rows written
    rows_per_window = read_results(sched, "risk").num_rows // 2
    # the restarted scheduler takes the window over, evaluates it once, and stops there
    done = subprocess.run([sys.executable, str(DRIVER), str(sched.root), later.isoformat()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run = moncat.get_monitor_run(sched.catalog, running[0].run_id)
    assert run is not None and run.status == "succeeded" and run.attempts == 2
    assert ends(sched) == [datetime(2026, 6, 1, 12, tzinfo=UTC),
                           datetime(2026, 6, 1, 13, tzinfo=UTC)]
    results = read_results(sched, "risk")
    assert results.num_rows == 2 * rows_per_window  # the dead attempt's rows replaced
    audit = [r.action for r in sched.ledger.audit() if r.target == "monitor:risk"]
    assert audit.count("monitor.evaluated") == 2


def test_two_schedulers_on_one_project_one_runs(sched: Project) -> None:
    first = Scheduler(sched, clock=lambda: AT)
    first.acquire()
    try:
        with pytest.raises(SchedulerBusy, match="another scheduler"):
            Scheduler(sched, clock=lambda: AT).run(once=True)
        # a second process is refused too, with the holder's pid
        other = subprocess.run([TARMAC, "-p", str(sched.root),
                                "scheduler", "--once"], capture_output=True, text=True,
                               timeout=120)
        assert other.returncode != 0
        assert "another scheduler" in other.stderr + other.stdout
    finally:
        first.release()
    assert moncat.monitor_runs(sched.catalog, "risk") == []  # neither second one ran a window


def test_the_lock_drops_when_its_holder_dies(sched: Project) -> None:
    holder = subprocess.Popen([TARMAC, "-p", str(sched.root),
                               "scheduler", "--poll", "60"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        lock = sched.root / ".tarmac" / "scheduler.lock"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if lock.exists() and lock.read_text().strip() == str(holder.pid):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the scheduler did not take its lock")
        with pytest.raises(SchedulerBusy, match=str(holder.pid)):
            Scheduler(sched, clock=lambda: AT).acquire()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    s = Scheduler(sched, clock=lambda: AT)
    s.acquire()
    s.release()
