"""Loading declared sources into the lake: ``ingest`` runs each source in its own ledger run and
loads its streams one by one (``_stream_load`` holds the protocol for one stream: read, check,
stage, commit exactly once through ``tarmac.lake.commit``, kill-safe).

A source that fails is reported in its result and the others still load; ``LoadResult``,
``IngestResults`` and ``LoadProgress`` (``tarmac.ingest.results``) are what callers get back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tarmac.errors import ConfigError, TarmacError, UsageError
from tarmac.ingest._read_ahead import read_ahead
from tarmac.ingest._stream_load import Progress, _StreamLoad
from tarmac.ingest.connectors import open_connector
from tarmac.ingest.results import IngestResults, LoadProgress, LoadResult
from tarmac.ingest.spec import SourceSpec, StreamSource

if TYPE_CHECKING:
    from tarmac.project import Project

__all__ = ["IngestResults", "LoadProgress", "LoadResult", "Progress", "ingest", "read_ahead"]


def ingest(project: Project, names: Iterable[str] | None = None, *, full_refresh: bool = False,
           progress: Progress | None = None) -> IngestResults:
    """Load the named sources (all but ``stream`` ones by default), one run per source.

    A source that fails is reported in its result (and its run is marked failed); the other
    sources still load. Call ``raise_for_errors()`` on the result to stop on any failure.
    """
    specs = project.sources
    wanted = list(names) if names else [n for n, s in specs.items()
                                        if not isinstance(s, StreamSource)]
    unknown = [n for n in wanted if n not in specs]
    if unknown:
        raise UsageError(f"unknown source(s): {', '.join(unknown)} (declared: "
                         f"{', '.join(specs) or 'none'})",
                         hint="declare sources under `sources:` in tarmac.yaml")
    if not specs:
        raise UsageError("no sources are declared in tarmac.yaml",
                         hint="add a `sources:` block; see docs/ingestion.md")
    results = IngestResults()
    with project.ledger.guard.acting("ingest"):
        for name in wanted:
            spec = specs[name]
            if isinstance(spec, StreamSource):
                results.append(LoadResult(name, name, "-", "skipped",
                                          error="stream sources are consumed by `tarmac stream`"))
                continue
            results.extend(_ingest_source(project, name, spec, full_refresh, progress))
    return results


def _ingest_source(project: Project, name: str, spec: SourceSpec, full_refresh: bool,
                   progress: Progress | None) -> list[LoadResult]:
    connector = open_connector(name, spec, project.root)
    assert connector is not None
    results: list[LoadResult] = []
    params = {"source": name, "type": spec.type, "location": spec.location(),
              "mode": "full_refresh" if full_refresh else spec.load_mode}
    try:
        with project.ledger.run(f"ingest.{name}", params=params) as run:
            try:
                streams = connector.streams()
            except TarmacError as exc:
                results.append(LoadResult(name, name, spec.table or "-", "failed",
                                          run_id=run.id, error=exc.message))
                raise
            for stream in streams:
                loader = _StreamLoad(project, connector, stream, run.id, full_refresh, progress)
                try:
                    results.append(loader.run())
                except TarmacError as exc:
                    results.append(loader.failed(exc.message))
                    raise
                except Exception as exc:  # a bug: recorded, re-raised below under TARMAC_DEBUG
                    results.append(loader.failed(f"{type(exc).__name__}: {exc}"))
                    raise
    except ConfigError:
        raise  # a declaration to fix (exit 2), recorded in the run like other failures
    except TarmacError:
        pass  # recorded in the result; the run is marked failed by the ledger
    except Exception:
        if os.environ.get("TARMAC_DEBUG"):
            raise
    finally:
        connector.close()
    return results
