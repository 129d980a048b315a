"""Anchors: the chain head published to a second place, so cutting records off the end is caught.

A hash chain cut at its tail is still a valid, shorter chain. An anchor is the head (sequence,
hash, and MAC when keyed) written somewhere the catalog's writers cannot rewrite together with
the catalog: by default an append-only JSON-lines file OUTSIDE the project,
``$XDG_STATE_HOME/tarmac/<project>-<catalog id>.anchors`` (``~/.local/state/tarmac/...``), one
file per catalog. The ledger publishes one automatically after every ``every_records`` new
records, or on the first record ``every_minutes`` after the last anchor; ``tarmac audit anchor``
publishes one now. ``verify`` checks the chain against the latest anchor by default: a chain
that ends before it, or whose record at its sequence differs (or lost its MAC), fails. Each
anchor names its chain by the hash of record 1, so a catalog deleted and made again at the same
URL (``tarmac demo`` resets its folder) starts fresh instead of failing forever.

Configured in ``tarmac.yaml``::

    audit_anchor:
      path: /mnt/worm/acme.anchors   # a file another team (or a WORM mount) keeps
      every_records: 100
      every_minutes: 60
      enabled: true

Example::

    anchors = AnchorFile(Path("/mnt/worm/acme.anchors"))
    anchors.publish(Anchor(seq=120, hash="…", mac=None, time_us=now_us(), chain=first_hash))
    anchors.latest(first_hash)   # Anchor(seq=120, ...)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tarmac.errors import UsageError


@dataclass(frozen=True)
class Anchor:
    """One published chain head."""

    seq: int
    hash: str
    mac: str | None
    time_us: int
    chain: str  # the hash of the chain's record 1: which chain this anchors (a catalog
    #             deleted and made again at the same URL starts a new chain)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "mac": self.mac, "time_us": self.time_us,
                "chain": self.chain}


@dataclass(frozen=True)
class AnchorPolicy:
    """Where anchors go and how often (``path`` None: anchors are off)."""

    path: Path | None
    every_records: int = 100
    every_minutes: float = 60.0


def default_anchor_path(project: str, catalog_url: str) -> Path:
    """``$XDG_STATE_HOME/tarmac/<project>-<12 hex of the catalog URL>.anchors`` (else
    ``~/.local/state/...``): outside the project, one file per catalog."""
    base = os.environ.get("XDG_STATE_HOME", "").strip()
    root = Path(base) if base else Path.home() / ".local" / "state"
    digest = hashlib.sha256(catalog_url.encode("utf-8")).hexdigest()[:12]
    return root / "tarmac" / f"{project}-{digest}.anchors"


class AnchorFile:
    """An append-only JSON-lines file of anchors; the latest is the one with the highest
    sequence."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def latest(self, chain: str) -> Anchor | None:
        """The newest anchor of ``chain`` (the hash of its record 1), None if none was
        published; an unreadable or malformed file is a ``UsageError`` naming it and the line
        (it may have been tampered with)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the audit anchor file {self.path}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        best: Anchor | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                anchor = Anchor(int(raw["seq"]), str(raw["hash"]), raw.get("mac"),
                                int(raw["time_us"]), str(raw["chain"]))
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"the audit anchor file {self.path} is malformed at line "
                                 f"{number}: expected a JSON object with seq, hash, mac, "
                                 "time_us and chain") from None
            if anchor.chain == chain and (best is None or anchor.seq >= best.seq):
                best = anchor
        return best

    def publish(self, anchor: Anchor) -> None:
        """Append one anchor (creating the file, mode 0600, and its folder, mode 0700)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(anchor.to_dict(), separators=(",", ":")) + "\n")


__all__ = ["Anchor", "AnchorFile", "AnchorPolicy", "default_anchor_path"]
