"""Crash tests of the prediction log with real processes: a writer SIGKILLed at random moments
under load (in appends, in flushes, in recoveries of the writer killed before it) loses no
prediction whose append returned and duplicates none; a writer that dies right after a flush's
Delta commit is not committed twice.

Each kill costs a fresh interpreter (about a second, mostly imports): the suite kills 10
writers, ``TARMAC_PREDLOG_KILLS=20`` (or more) for a deeper run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tarmac.project import Project
from tarmac.serving.predlog import PredictionLog, log_totals, read_predictions

DRIVER = Path(__file__).with_name("predlog_driver.py")
KILLS = int(os.environ.get("TARMAC_PREDLOG_KILLS", "10"))


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])])}


def _answered(out: Path) -> list[str]:
    """The ids the child printed after their append returned (whole lines only)."""
    text = out.read_text()
    lines = text.split("\n")[:-1]  # a line cut by the kill has no newline yet
    return [line for line in lines if line and line != "ready"]


def _wait_ready(out: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while "ready\n" not in out.read_text():
        if proc.poll() is not None:
            raise AssertionError(f"the driver exited with {proc.returncode}: "
                                 f"{proc.stderr.read().decode() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError("the driver did not start")
        time.sleep(0.02)


def _recover_and_read(project: Project) -> Counter[str]:
    log = PredictionLog(project, flush_every_s=3600)
    log.start()
    log.close()
    assert log.stats().last_error is None
    totals = log_totals(project)
    assert totals.pending == 0 and totals.segments == 0
    return Counter(read_predictions(project).column("id").to_pylist())


@pytest.mark.slow
def test_sigkill_under_load_loses_and_duplicates_nothing(project: Project,
                                                         tmp_path: Path) -> None:
    """``KILLS`` writers in turn (10; ``TARMAC_PREDLOG_KILLS`` for more), each SIGKILLed at a
    random moment, each recovering what the one before it left."""
    rng = random.Random(13)
    answered: list[str] = []
    for k in range(KILLS):
        out = tmp_path / f"out{k}.txt"
        with open(out, "wb") as fh:
            proc = subprocess.Popen([sys.executable, str(DRIVER), str(project.root)],
                                    stdout=fh, stderr=subprocess.PIPE, env=_env())
            try:
                _wait_ready(out, proc)
                time.sleep(rng.uniform(0.0, 0.5))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the driver ended before it was killed"
        answered += _answered(out)
    assert len(answered) > KILLS * 10, "too little load to mean anything"
    in_table = _recover_and_read(project)
    missing = [i for i in answered if in_table[i] == 0]
    duplicated = [i for i, n in in_table.items() if n > 1]
    assert not missing, f"{len(missing)} answered predictions are not in the table"
    assert not duplicated, f"{len(duplicated)} predictions are in the table twice"


def test_death_right_after_the_commit_is_not_committed_twice(project: Project,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with open(out, "wb") as fh:
        done = subprocess.run([sys.executable, str(DRIVER), str(project.root), "--count", "30",
                               "--flush-every", "3600", "--exit-after-commit"],
                              stdout=fh, stderr=subprocess.PIPE, env=_env(), timeout=120)
    assert done.returncode == 9, done.stderr.decode()
    answered = _answered(out)
    assert len(answered) >= 30
    assert log_totals(project).segments == 1  # committed, but the segment is still there
    in_table = _recover_and_read(project)
    assert sorted(in_table) == sorted(answered) and set(in_table.values()) == {1}
