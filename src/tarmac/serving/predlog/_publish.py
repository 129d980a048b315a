"""Publishing the prediction log to a topic of the project's stream log.

With ``serving.prediction_log.topic`` set, the flusher does not commit segments to the lake
itself: it produces their records, as JSON objects keyed by prediction id, to the topic, where
other systems can subscribe, and ``tarmac stream run`` sinks the topic into the ``predictions``
table through the streams' exactly-once path (the stream source ``predictions``, declared by
Tarmac with the table's schema, ``id`` as primary key and ``time`` as event time).

Publishing is at least once: how many of a segment's records are published is noted in a small
file next to the segment after each confirmed produce; a process killed between the two
publishes that part again on recovery. The sink drops the repeats by prediction id, so the
table holds each prediction once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tarmac import faults
from tarmac.errors import TopicNotFoundError
from tarmac.serving.predlog._commit import Committed
from tarmac.serving.predlog._record import to_table

if TYPE_CHECKING:
    from tarmac.streams import StreamLog


def _marker(directory: Path, segment: str) -> Path:
    return directory / f"{segment}.published"


def published_count(directory: Path, segment: str) -> int:
    """How many of ``segment``'s records were confirmed published (0 if none)."""
    try:
        return int(_marker(directory, segment).read_text(encoding="ascii").strip() or 0)
    except FileNotFoundError:
        return 0


def forget(directory: Path, segment: str) -> None:
    """Drop the published count of a segment that is gone."""
    _marker(directory, segment).unlink(missing_ok=True)


def to_records(payloads: Sequence[bytes]) -> list[dict[str, Any]]:
    """The records as the JSON objects published: the ``predictions`` table's columns, the
    time as ISO 8601 UTC with microseconds, nested values as the JSON text the table keeps."""
    rows = to_table(payloads).to_pylist()
    for row in rows:
        t: datetime = row["time"]
        row["time"] = t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return rows


def publish_segment(log: StreamLog, topic: str, directory: Path, segment: str,
                    payloads: Sequence[bytes], total: int) -> Committed:
    """Produce the records of ``segment`` up to record number ``total`` that are not
    published yet (``payloads`` are its last ``len(payloads)`` records)."""
    done = published_count(directory, segment)
    first = total - len(payloads)
    todo = payloads[max(0, done - first):]
    if not todo:
        return Committed(0, None)
    records = to_records(todo)
    try:
        log.produce(topic, records, key="id")
    except TopicNotFoundError:  # the first publish on this project: one partition
        log.create_topic(topic, 1, exist_ok=True)
        log.produce(topic, records, key="id")
    faults.point("predlog.after_publish", segment=segment, records=len(todo))
    marker = _marker(directory, segment)
    tmp = marker.with_name(marker.name + ".tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(str(total))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)
    return Committed(len(todo), None)
