"""Run one scheduler pass on a project in a process of its own, at a fixed clock, optionally
SIGKILLing itself at a fault point (``python scheduler_driver.py ROOT ISO_TIME [POINT]``)."""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime

import tarmac
from tarmac import faults
from tarmac.monitoring.scheduler import Scheduler


def main() -> None:
    root, at = sys.argv[1], datetime.fromisoformat(sys.argv[2])
    point = sys.argv[3] if len(sys.argv) > 3 else None
    p = tarmac.open(root)
    scheduler = Scheduler(p, clock=lambda: at)
    if point:
        with faults.inject(point, lambda **_: os.kill(os.getpid(), signal.SIGKILL)):
            scheduler.run(once=True)
    else:
        scheduler.run(once=True)
    p.close()


if __name__ == "__main__":
    main()
