"""Catalog administration that works without opening a project: copy its catalog to another
database, hand a catalog to the project's current name.

These are SDK functions (the CLI's ``tarmac catalog copy`` and ``tarmac catalog claim`` and the
console call them) rather than ``Project`` methods because opening a project refuses a catalog
that belongs to another name, which is exactly what ``claim`` repairs.

Example::

    from tarmac.admin import claim_catalog, copy_catalog
    result = copy_catalog("postgresql://tarmac@db/acme", dry_run=True)
    result.copied, result.source_rows
    claim_catalog()  # -> (old name, new name)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tarmac.config import CONFIG_FILE, load_config

if TYPE_CHECKING:
    from tarmac.catalog.copy import CopyResult

__all__ = ["claim_catalog", "copy_catalog"]


def copy_catalog(to: str, *, source: str | None = None, project: Path | str | None = None,
                 dry_run: bool = False, batch_size: int = 5000) -> CopyResult:
    """Copy every catalog table (runs, lineage, audit chain, sources, features, models) from
    ``source`` (default: the catalog of the project at or above ``project``) to ``to``, and
    verify the audit chain there. Rows already there and identical are skipped; a destination
    holding something else is refused before anything is written (``CatalogCopyError``)."""
    from tarmac.catalog.copy import copy_catalog as copy
    from tarmac.catalog.copy import destination_url
    from tarmac.errors import UsageError
    from tarmac.ledger.keys import resolve_key
    from tarmac.project import find_root

    root = find_root(project)
    config = load_config(root / CONFIG_FILE)
    source = config.catalog if source is None else destination_url(source)
    key = resolve_key(project=config.name, configured=config.audit_key, root=root)
    if key.problem:
        raise UsageError(key.problem)
    return copy(source, destination_url(to), dry_run=dry_run, batch_size=batch_size,
                audit_key=key.key)


def claim_catalog(project: Path | str | None = None) -> tuple[str | None, str]:
    """Hand the catalog of the project at or above ``project`` to the name in its
    ``tarmac.yaml`` (after the project was renamed), recorded in the audit trail with the old
    name. Returns ``(old name, new name)``; nothing is written when they are the same."""
    from tarmac.catalog import Catalog
    from tarmac.catalog import store as cat
    from tarmac.ledger import Ledger
    from tarmac.ledger.keys import resolve_key
    from tarmac.project import find_root

    root = find_root(project)
    config = load_config(root / CONFIG_FILE)
    catalog = Catalog(config.catalog)
    try:
        old = catalog.project_name()
        if old != config.name:
            key = resolve_key(project=config.name, configured=config.audit_key, root=root)
            Ledger(catalog, namespace=config.name, key=key).commit(
                "catalog.claim", config.name, {"from": old},
                change=lambda conn: cat.set_project(conn, config.name))
        return old, config.name
    finally:
        catalog.close()
