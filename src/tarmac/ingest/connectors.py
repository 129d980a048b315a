"""Which connector reads which kind of source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tarmac.ingest.base import Connector
from tarmac.ingest.spec import FileSource, HttpSource, SourceSpec, SqlSource


def open_connector(name: str, spec: SourceSpec, root: Path) -> Connector[Any] | None:
    """The connector for a declared source; None for ``stream`` sources (read by streams)."""
    if isinstance(spec, SqlSource):
        from tarmac.ingest.sql import SqlConnector

        return SqlConnector(name, spec, root)
    if isinstance(spec, FileSource):
        from tarmac.ingest.files import FileConnector

        return FileConnector(name, spec, root)
    if isinstance(spec, HttpSource):
        from tarmac.ingest.http import HttpConnector

        return HttpConnector(name, spec, root)
    return None
