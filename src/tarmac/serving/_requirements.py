"""The pinned requirements of a serving image: what is installed here, as ``name==version``.

A container must run the model with the libraries that trained it, so nothing is left to the
resolver: tarmac's runtime dependencies (and those of the extras the project needs: ``postgres``
for a PostgreSQL catalog, ``redis`` for a Redis online store, ``lightgbm`` for a LightGBM model)
are walked through ``importlib.metadata`` and pinned to the versions installed in this
environment. A ``requirements.txt`` in the project folder wins for every package it names (the
team's own pins), and adds what the project's code imports beyond tarmac.

Example::

    lock = pinned_requirements(extras={"postgres"})
    lock.lines      # ['alembic==1.14.0', 'annotated-types==0.7.0', ...]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass
class Lock:
    """Pinned requirement lines plus what the reader should know (unpinned user lines...)."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def pinned_requirements(root: str = "tarmac", *, extras: set[str] | frozenset[str] = frozenset(),
                        skip_root: bool = False) -> Lock:
    """``root`` and everything it needs at run time (with ``extras``), pinned as installed.

    A dependency whose marker is false here (another platform, another Python) is left out; a
    dependency that is not installed is reported in ``warnings`` rather than guessed.
    """
    lock = Lock()
    pins: dict[str, str] = {}
    queue: list[tuple[str, frozenset[str]]] = [(root, frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        name, wanted = queue.pop()
        key = canonicalize_name(name)
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            lock.warnings.append(f"'{name}' is required but not installed here: it is not pinned")
            continue
        pins[key] = f"{dist.metadata['Name']}=={dist.version}"
        for text in dist.requires or []:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not any(
                    req.marker.evaluate(_environment(e)) for e in (wanted or {""})):
                continue
            queue.append((req.name, frozenset(req.extras)))
    if skip_root:
        pins.pop(canonicalize_name(root), None)
    lock.lines = [pins[k] for k in sorted(pins)]
    return lock


def _environment(extra: str) -> dict[str, str]:
    """The marker environment of this interpreter, with ``extra`` requested."""
    environment: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    environment["extra"] = extra
    return environment


def merge_project_requirements(lock: Lock, file: Path) -> Lock:
    """``lock`` with the project's ``requirements.txt`` taking precedence: a package the file
    names keeps the file's line; the file's other lines (options, URLs) are kept as they are.
    Lines that are not pinned with ``==`` are kept but reported in ``warnings``."""
    text = file.read_text(encoding="utf-8")
    own: list[str] = []
    named: set[str] = set()
    warnings = list(lock.warnings)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        own.append(line)
        match = _NAME.match(line)
        if line.startswith("-") or match is None:
            continue
        named.add(canonicalize_name(match.group(1)))
        if "==" not in line and "@" not in line:
            warnings.append(f"{file.name} line {number}: '{line}' is not pinned with ==; "
                            "the image may get another version than the one tested")
    kept = [pin for pin in lock.lines if canonicalize_name(pin.split("==")[0]) not in named]
    return Lock(lines=[*own, *kept], warnings=warnings)


def tarmac_source() -> Path | None:
    """The folder holding tarmac's ``pyproject.toml`` when tarmac runs from a source checkout
    (an editable install or ``PYTHONPATH=src``), else ``None`` (installed from an index)."""
    import tarmac

    package = Path(tarmac.__file__).resolve().parent
    for candidate in (package.parent.parent, package.parent):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and re.search(r'(?m)^name\s*=\s*"tarmac"\s*$',
                                             pyproject.read_text(encoding="utf-8")):
            return candidate
    return None
