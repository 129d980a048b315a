"""Does the catalog know the lake it is pointed at? Tables Tarmac wrote that the catalog lacks.

A project re-pointed at an empty catalog used to go wrong silently: ``tables`` said "no tables
yet" while SQL still read them, the audit chain verified with 0 records, and ingestion restarted
its transaction sequence so every load looked already committed. Every table Tarmac writes
carries the ledger's run id in each Delta commit (``tarmac.run_id``), so the lake itself says
which tables a catalog must know. Opening a project checks that (a directory listing and one
catalog query; only tables the catalog lacks have a commit file read) and refuses to work with
a catalog that lacks any, naming them and the two ways out: ``tarmac catalog copy`` (bring the
old catalog) or ``tarmac catalog adopt`` (register them in this one, audited).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tarmac.catalog.records import all_items
from tarmac.catalog.store import Catalog
from tarmac.config import backend, redact
from tarmac.errors import ConfigError

RUN_KEY = "tarmac.run_id"  # the commit metadata every Tarmac write carries (see lake/lake.py)
_SHOWN = 10


def _local(root: str) -> bool:
    """A lake in a folder on this machine: the backend registry says, as for ``Lake.is_local``."""
    return backend("lake", root).in_process


def lake_tables(root: str) -> list[str]:
    """Names of the Delta tables directly under the lake root (folders with a ``_delta_log``)."""
    if not _local(root):
        return _remote_tables(root)
    base = Path(root.removeprefix("file://"))
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return []
    return sorted(e.name for e in entries
                  if e.is_dir() and (Path(e.path) / "_delta_log").is_dir())


def _remote_tables(root: str) -> list[str]:
    """The same over an object store, through pyarrow's filesystems (credentials from the
    environment, as delta-rs takes them); an unreachable store is left to the lake to report."""
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(root)
        infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == fs.FileType.Directory
                      and filesystem.get_file_info(f"{i.path}/_delta_log").type
                      == fs.FileType.Directory)
    except (OSError, ValueError):
        return []


def commit_runs(root: str, name: str) -> list[str]:
    """The Tarmac run ids in table ``name``'s newest and oldest kept commit files (the log may
    have been cleaned up to a checkpoint); empty if no commit carries one (not Tarmac's)."""
    runs: list[str] = []
    for text in _edge_commits(root, name):
        for line in text.splitlines():
            if '"commitInfo"' not in line:
                continue
            try:
                run = json.loads(line).get("commitInfo", {}).get(RUN_KEY)
            except ValueError:
                continue
            if isinstance(run, str) and run not in runs:
                runs.append(run)
    return runs


def _edge_commits(root: str, name: str) -> list[str]:
    """The text of the newest and the oldest JSON commit of a table's log."""
    if not _local(root):
        from pyarrow import fs

        try:
            filesystem, path = fs.FileSystem.from_uri(f"{root.rstrip('/')}/{name}/_delta_log")
            files = sorted(i.path for i in filesystem.get_file_info(fs.FileSelector(path))
                           if i.base_name.endswith(".json") and i.base_name[:-5].isdigit())
            out = []
            for f in dict.fromkeys(files[-1:] + files[:1]):
                with filesystem.open_input_stream(f) as fh:
                    out.append(fh.read().decode("utf-8", "replace"))
            return out
        except (OSError, ValueError):
            return []
    log = Path(root.removeprefix("file://")) / name / "_delta_log"
    commits = sorted(p for p in log.glob("*.json") if p.stem.isdigit())
    out = []
    for p in dict.fromkeys(commits[-1:] + commits[:1]):
        try:
            out.append(p.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    return out


def unknown_tables(catalog: Catalog, root: str, *, foreign_only: bool = True) -> list[str]:
    """Tarmac-written tables in the lake that this catalog has no entry for, sorted.

    With ``foreign_only`` (what opening checks), only those none of whose writing runs (named
    in its commits) is one of this catalog's: a first write that crashed between its Delta
    commit and its catalog record, or one still in flight, is this catalog's own and not a
    sign of a foreign catalog (``adopt`` registers those too)."""
    present = lake_tables(root)
    if not present:
        return []
    known = {d.name for d in all_items(lambda c: catalog.list_datasets(limit=1000, cursor=c))}
    out = []
    for name in present:
        if name in known:
            continue
        runs = commit_runs(root, name)
        if runs and not (foreign_only and catalog.get_runs(runs)):
            out.append(name)
    return out


def check(catalog: Catalog, root: str) -> None:
    """Refuse (exit 2) when the lake holds Tarmac tables this catalog does not know."""
    missing = unknown_tables(catalog, root)
    if not missing:
        return
    shown = ", ".join(missing[:_SHOWN]) + (f" and {len(missing) - _SHOWN} more"
                                           if len(missing) > _SHOWN else "")
    raise ConfigError(
        f"the catalog at {redact(catalog.url)} does not know {len(missing)} table(s) Tarmac "
        f"wrote in the lake at {redact(root)}: {shown}",
        hint="if the project moved to a new catalog, copy the old one first: tarmac catalog "
             "copy --from OLD_URL --to NEW_URL; to register the tables in this catalog "
             "instead (their history before now stays in the old one): tarmac catalog adopt")
