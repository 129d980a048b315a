"""Where each stream source stands: per partition, the offset committed to the lake (read from
the Delta log, the truth), the log's end offset, the lag between them, rows loaded and the time
of the last commit (from the catalog), and the source's quarantined records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tarmac.catalog import sources as state_store
from tarmac.catalog.records import to_datetime
from tarmac.errors import TopicNotFoundError
from tarmac.ingest import quarantine
from tarmac.ingest.base import table_name
from tarmac.streams.sink import committed_positions, stream_sources

if TYPE_CHECKING:
    from tarmac.project import Project


def stream_status(project: Project) -> list[dict[str, Any]]:
    """One row per (stream source, partition); a topic not created yet gives one row."""
    rows: list[dict[str, Any]] = []
    for name, spec in sorted(stream_sources(project).items()):
        states = {s.stream: s for s in state_store.stream_states(project.catalog, name)}
        bad = _quarantined(project, name)
        try:
            ends = project.streams.end_offsets(spec.topic)
        except TopicNotFoundError:
            rows.append({"source": name, "topic": spec.topic, "partition": None,
                         "committed": None, "end": None, "lag": None, "rows": 0,
                         "quarantined": bad, "last_commit": None,
                         "note": f"topic {spec.topic!r} does not exist yet"})
            continue
        table = spec.table or table_name(name)
        at = committed_positions(project.lake, name, spec.topic, table, range(len(ends)))
        for p, end in enumerate(ends):
            committed = at[p]
            state = states.get(f"{spec.topic}:{p}")
            rows.append({"source": name, "topic": spec.topic, "partition": p,
                         "committed": committed, "end": end,
                         "lag": end - (committed or 0),
                         "rows": state.rows_total if state else 0, "quarantined": bad,
                         "last_commit": to_datetime(state.updated_at) if state else None})
    return rows


def _quarantined(project: Project, source: str) -> int:
    if not project.lake.exists(quarantine.TABLE):
        return 0
    from tarmac.lake import quote_literal

    found = project.sql(f"SELECT count(*) AS n FROM quarantine WHERE source = "
                        f"{quote_literal(source)}")
    return int(found["n"][0].as_py())
