"""Named fault points: where tests (and chaos drills) step into a running operation.

Code that has a moment worth interrupting, racing or delaying calls ``point(name, ...)`` there;
with nothing injected that is one dictionary lookup. A test injects a hook for the duration of a
``with`` block instead of monkeypatching a private method, so the seam survives refactors and
its name says what moment it is::

    from tarmac import faults

    def overtaken(**_ctx):
        other_writer_commits()

    with faults.inject("lake.before_record", overtaken):
        p.lake.write("t", rows)        # the hook runs after the Delta commit, before the catalog

Every point is declared in ``POINTS`` (injecting an unknown name is an error, so a renamed
point cannot silently stop a test from testing anything).

A process started by a test or a drill (``tarmac`` run as a subprocess) takes its faults from
the environment instead: ``TARMAC_FAULTS="POINT=ACTION[;POINT=ACTION...]"``, where ACTION is
``kill`` (the process sends itself SIGKILL: no cleanup, no ``finally``, like the OOM killer or
a pulled plug) or ``sleep:SECONDS`` (a window in which to kill it from outside), optionally
``@N`` to act only at the Nth pass (default: the first)::

    TARMAC_FAULTS="erase.after_delete=kill@2" tarmac erase --subject customer_id=7 --reason r

A malformed value is an error naming the variable, raised when this module is imported (before
any operation starts).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tarmac.errors import UsageError

POINTS: dict[str, str] = {
    "lake.before_record": "after a table's Delta commit, before its catalog entry, lineage and "
                          "audit are recorded (context: table, version)",
    "train.before_register": "after a model is fitted and its artifacts stored, before the "
                             "version is registered (context: model, run_id)",
    "commit.after_step": "after one table's step of a commit plan (its Delta commit, or the "
                         "skip of one already made), before the next step and the catalog "
                         "transaction (context: plan, table, result)",
    "commit.after_catalog": "after a commit plan's catalog transaction (offsets, counts, audit), "
                            "before its staged leftovers are cleaned up (context: plan)",
    "promote.after_checks": "after a promotion has read the alias and checked the gates, before "
                            "it moves the alias (context: model, version, alias)",
    "predlog.write": "before a prediction-log append writes its frames to the segment file "
                     "(context: path, size); raise OSError(ENOSPC) here to simulate a full disk",
    "predlog.before_commit": "before a prediction-log flush commits a segment's records to the "
                             "predictions table (context: segment, rows)",
    "predlog.after_publish": "after a prediction-log segment's records were produced to the "
                             "topic, before the published count is noted (context: segment, "
                             "records)",
    "predlog.after_commit": "after a prediction-log flush's Delta commit, before the log notes it "
                            "or deletes the segment (context: segment, version)",
    "erase.after_delete": "after an erasure's DELETE of one table's subject rows, before that "
                          "table is vacuumed: the current version is clean, older files still "
                          "hold the subject (context: table, version)",
    "monitor.after_results": "after a monitor's window results are written to monitor_results, "
                             "before the window is recorded as evaluated (context: monitor, "
                             "run_id, window_end)",
}

ENV = "TARMAC_FAULTS"
Hook = Callable[..., Any]
_hooks: dict[str, list[Hook]] = {}
_lock = threading.Lock()


def point(name: str, **context: Any) -> None:
    """Run the hooks injected at ``name`` (none in production), passing ``context``."""
    hooks = _hooks.get(name)
    if hooks:
        for hook in list(hooks):
            hook(**context)


@contextmanager
def inject(name: str, hook: Hook) -> Iterator[None]:
    """Run ``hook(**context)`` every time the code passes ``name``, until the block ends."""
    if name not in POINTS:
        raise UsageError(f"no fault point '{name}'; the points are: {', '.join(sorted(POINTS))}")
    with _lock:
        _hooks.setdefault(name, []).append(hook)
    try:
        yield
    finally:
        with _lock:
            _hooks[name].remove(hook)
            if not _hooks[name]:
                del _hooks[name]


def _load_env() -> None:
    """Install the faults ``TARMAC_FAULTS`` names (see the module's docstring)."""
    text = os.environ.get(ENV, "").strip()
    parsed = [_env_fault(part.strip()) for part in text.split(";") if part.strip()]
    for name, hook in parsed:
        _hooks.setdefault(name, []).append(hook)


def _env_fault(spec: str) -> tuple[str, Hook]:
    name, sep, action = spec.partition("=")
    name, action = name.strip(), action.strip()
    if not sep or name not in POINTS:
        raise UsageError(f"{ENV}: {spec!r} must be POINT=ACTION with POINT one of: "
                         f"{', '.join(sorted(POINTS))}")
    action, _, nth_text = action.partition("@")
    if not nth_text:
        nth = 1
    elif nth_text.strip().isdigit() and int(nth_text) > 0:
        nth = int(nth_text)
    else:
        raise UsageError(f"{ENV}: {spec!r}: after @ comes the pass to act at, a whole "
                         f"number from 1 (got {nth_text!r})")
    seconds = 0.0
    if action.startswith("sleep:"):
        try:
            seconds = float(action.removeprefix("sleep:"))
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= 3600:
            raise UsageError(f"{ENV}: {spec!r}: sleep:SECONDS takes 0 to 3600 seconds")
    elif action != "kill":
        raise UsageError(f"{ENV}: {spec!r}: the action is kill or sleep:SECONDS (got "
                         f"{action!r})")
    passes = [0]

    def hook(**_context: Any) -> None:
        passes[0] += 1
        if passes[0] != nth:
            return
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(seconds)

    return name, hook


_load_env()
