"""A child process for the prediction-log crash tests: appends records to a project's log and
prints each id (one line, one ``write``) only after ``append`` returned, like a server that
answers after logging. The tests SIGKILL it at random moments, or let it die right after a
flush's Delta commit, and check that every printed id is in the table exactly once.

    python predlog_driver.py PROJECT [--count N] [--exit-after-commit] [--flush-every S]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from datetime import UTC, datetime
from typing import Any

import tarmac
from tarmac import faults
from tarmac.serving.predlog import PredictionLog, PredictionRecord, new_prediction_id


def record(i: int) -> PredictionRecord:
    now = datetime.now(UTC)
    return PredictionRecord(
        id=new_prediction_id(), request_id=f"req-{os.getpid()}-{i}", time=now,
        endpoint="churn", model="churn", version=1 + i % 2,
        role="champion" if i % 2 else "canary", features={"plan": "basic", "tenure": i},
        feature_times={"plan": now, "tenure": None},
        feature_status={"plan": "present", "tenure": "request"},
        request={"customer_id": i}, score=random.random(), label=i % 3 == 0, latency_ms=0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("project")
    ap.add_argument("--count", type=int, default=0, help="records to append (0: until killed)")
    ap.add_argument("--flush-every", type=float, default=0.05)
    ap.add_argument("--exit-after-commit", action="store_true",
                    help="append --count records, then die right after the flush's commit")
    args = ap.parse_args()
    p = tarmac.open(args.project)
    log = PredictionLog(p, flush_every_s=args.flush_every)
    log.start()
    os.write(1, b"ready\n")
    i = 0
    while args.count == 0 or i < args.count:
        batch = [record(i + k) for k in range(random.randint(1, 4))]
        log.append(batch)
        os.write(1, "".join(f"{r.id}\n" for r in batch).encode())
        i += len(batch)
    if args.exit_after_commit:
        def die(**_ctx: Any) -> None:
            os._exit(9)

        with faults.inject("predlog.after_commit", die):
            log.flush()
        sys.exit("the flush did not commit")
    log.close()
    p.close()


if __name__ == "__main__":
    main()
