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
"""

from __future__ import annotations

import threading
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
}

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
