"""Content-addressed artifacts: bytes stored under their SHA-256, verified on every read.

A model is loaded only if its bytes still hash to what the registry recorded when it was
trained, so an artifact edited on disk is refused, never silently served.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from tarmac.errors import ArtifactError


class ArtifactStore:
    """A folder of immutable blobs: ``<root>/sha256/<first 2 hex>/<hash>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Store ``data`` (atomically; a blob already there is kept) and return its hash."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists() and _hash_file(target) == digest:
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str, *, what: str = "artifact") -> bytes:
        """The bytes stored under ``digest``; refuses missing or altered ones."""
        target = self.path(digest)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"{what} {digest[:12]} is missing: {target} does not exist",
                                hint="was the artifact folder moved or cleaned?") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ArtifactError(
                f"{what} at {target} was altered: its SHA-256 is {actual[:12]}..., the registry "
                f"recorded {digest[:12]}...; refusing to load it",
                hint="restore the original file or retrain the version")
        return data


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
