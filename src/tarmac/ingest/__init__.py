"""Ingestion: declared sources (SQL, files, HTTP) loaded into the lake under contracts, with
rejected records quarantined, incremental cursors, and a survey of the sources before any load.

Example::

    results = p.ingest(["crm"])            # one LoadResult per stream
    results[0].rows_loaded, results[0].rows_quarantined
"""

from tarmac.ingest.load import IngestResults, LoadProgress, LoadResult, ingest
from tarmac.ingest.spec import SourceSpec, parse_sources

__all__ = ["IngestResults", "LoadProgress", "LoadResult", "SourceSpec", "ingest",
           "parse_sources"]
