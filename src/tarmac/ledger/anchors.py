"""Anchors: the chain head published to a second place, so cutting records off the end is caught.

A hash chain cut at its tail is still a valid, shorter chain. An anchor is the head (sequence,
hash, and MAC when keyed) written somewhere the catalog's writers cannot rewrite together with
the catalog: by default an append-only JSON-lines file OUTSIDE the project,
``$XDG_STATE_HOME/tarmac/<project>-<catalog id>.anchors`` (``~/.local/state/tarmac/...``), one
file per catalog (``AnchorFile``); or an object-store prefix, ``s3://bucket/prefix``, one object
per anchor at ``<prefix>/<chain>/<seq, 20 digits>.json`` because S3 has no append
(``AnchorObjects``; a bucket with Object Lock makes them write-once); and besides either, a
webhook that receives each anchor as signed JSON (``AnchorWebhook``: a SIEM or another team's
service keeps it; it cannot be read back, so ``verify`` checks the file or the objects).
The ledger publishes one automatically after every ``every_records`` new records, or on the
first record ``every_minutes`` after the last anchor; ``tarmac audit anchor`` publishes one
now. A target that fails never blocks or loses an audit record: the failure is logged and
recorded (``audit.anchor_failed``), and the next trigger publishes the then-current head.
``verify`` checks the chain against the latest anchor by default: a chain that ends before it,
or whose record at its sequence differs (or lost its MAC), fails. Each
anchor names its chain by the hash of record 1, so a catalog deleted and made again at the same
URL (``tarmac demo`` resets its folder) starts fresh instead of failing forever.

Configured in ``tarmac.yaml``::

    audit_anchor:
      path: /mnt/worm/acme.anchors   # a file another team (or a WORM mount) keeps,
                                     # or s3://audit-bucket/anchors/acme
      webhook: https://siem.example.com/tarmac/anchors
      webhook_secret: ${ANCHOR_SECRET}
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
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tarmac import webhooks
from tarmac.errors import TarmacError, UsageError

if TYPE_CHECKING:
    import httpx
    from pyarrow import fs as pafs


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


    @classmethod
    def from_dict(cls, raw: Any) -> Anchor:
        """An anchor from its JSON form (``ValueError``/``KeyError``/``TypeError`` if it is
        not one)."""
        return cls(int(raw["seq"]), str(raw["hash"]), raw.get("mac"), int(raw["time_us"]),
                   str(raw["chain"]))


@dataclass(frozen=True)
class AnchorPolicy:
    """Where anchors go and how often: a file (``path``) or an object-store prefix (``url``,
    reached with ``storage_options``), and a webhook (``webhook``, signed with
    ``webhook_secret``) besides. ``path`` and ``url`` both None: anchors are off."""

    path: Path | None
    every_records: int = 100
    every_minutes: float = 60.0
    url: str | None = None
    storage_options: dict[str, str] | None = field(default=None, repr=False)
    webhook: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)

    @property
    def location(self) -> str | None:
        """Where ``verify`` reads anchors back (None: anchors are off)."""
        return self.url or (str(self.path) if self.path is not None else None)


class AnchorFailed(TarmacError):
    """Publishing an anchor failed at one or more targets (exit code 1); the audit records
    are committed all the same."""


class AnchorStore(Protocol):
    """Where anchors are kept and read back from."""

    @property
    def where(self) -> str: ...

    def latest(self, chain: str) -> Anchor | None: ...

    def publish(self, anchor: Anchor) -> None: ...


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

    @property
    def where(self) -> str:
        return str(self.path)

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
                anchor = Anchor.from_dict(json.loads(line))
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


_OBJECT = re.compile(r"^(\d{20})\.json$")
#: delta-rs storage option names (as ``TARMAC_STORAGE_*`` and ``AWS_*`` give them) -> pyarrow
_S3_OPTIONS = {"aws_access_key_id": "access_key", "access_key_id": "access_key",
               "aws_secret_access_key": "secret_key", "secret_access_key": "secret_key",
               "aws_session_token": "session_token", "session_token": "session_token",
               "aws_region": "region", "region": "region"}
_S3_ENDPOINTS = ("aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint")


class AnchorObjects:
    """Anchors in an S3-compatible object store, one object each:
    ``<prefix>/<chain>/<seq:020d>.json``; the latest is the greatest key (20-digit sequence
    numbers sort as numbers). Credentials and endpoint come from the same environment as the
    lake's (``AWS_*``, ``TARMAC_STORAGE_*``: ``tarmac.lake``), passed in as
    ``storage_options``."""

    def __init__(self, url: str, storage_options: Mapping[str, str] | None = None, *,
                 filesystem: pafs.FileSystem | None = None) -> None:
        scheme, _, rest = url.partition("://")
        if scheme.lower() != "s3" or not rest.strip("/"):
            raise UsageError(f"audit anchors in an object store need s3://BUCKET/PREFIX, got "
                             f"{url!r}")
        self.url = url.rstrip("/")
        self._root = rest.strip("/")
        self._options = dict(storage_options or {})
        self._fs = filesystem

    @property
    def where(self) -> str:
        return self.url

    def _filesystem(self) -> pafs.FileSystem:
        if self._fs is None:
            from pyarrow import fs as pafs

            kwargs: dict[str, Any] = {"connect_timeout": 5.0, "request_timeout": 10.0}
            for name, value in self._options.items():
                if name.lower() in _S3_OPTIONS:
                    kwargs[_S3_OPTIONS[name.lower()]] = value
            endpoint = next((self._options[k] for k in self._options
                             if k.lower() in _S3_ENDPOINTS), None)
            if endpoint:
                scheme, sep, host = endpoint.partition("://")
                kwargs["endpoint_override"] = host if sep else endpoint
                kwargs["scheme"] = scheme if sep else (
                    "http" if str(self._options.get("aws_allow_http", "")).lower() == "true"
                    else "https")
            self._fs = pafs.S3FileSystem(**kwargs)
        return self._fs

    def _key(self, chain: str, seq: int | None = None) -> str:
        folder = f"{self._root}/{chain}"
        return folder if seq is None else f"{folder}/{seq:020d}.json"

    def latest(self, chain: str) -> Anchor | None:
        """The newest anchor of ``chain``, None if none was published; an unreachable store
        or a malformed object is a ``UsageError`` naming it."""
        from pyarrow import fs as pafs

        try:
            infos = self._filesystem().get_file_info(
                pafs.FileSelector(self._key(chain), allow_not_found=True))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot list the audit anchors at {self.url}: {exc}") from None
        names = sorted(i.base_name for i in infos if _OBJECT.match(i.base_name))
        if not names:
            return None
        key = f"{self._key(chain)}/{names[-1]}"
        try:
            with self._filesystem().open_input_stream(key) as fh:
                raw = json.loads(fh.read().decode("utf-8"))
            anchor = Anchor.from_dict(raw)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"the audit anchor s3://{key} is unreadable or malformed ({exc}): "
                             "expected a JSON object with seq, hash, mac, time_us and chain"
                             ) from None
        if anchor.chain != chain or f"{anchor.seq:020d}.json" != names[-1]:
            raise UsageError(f"the audit anchor s3://{key} does not hold the anchor its name "
                             f"says (it names record {anchor.seq} of chain "
                             f"{anchor.chain[:12]}…): it was overwritten")
        return anchor

    def publish(self, anchor: Anchor) -> None:
        """Write one anchor object (one PUT: it appears whole or not at all)."""
        body = json.dumps(anchor.to_dict(), separators=(",", ":")).encode("utf-8")
        with self._filesystem().open_output_stream(
                self._key(anchor.chain, anchor.seq),
                metadata={"Content-Type": "application/json"}) as fh:
            fh.write(body)


class AnchorWebhook:
    """POST each anchor (with the project's name) to ``url`` as JSON, signed with HMAC-SHA256
    (``tarmac.webhooks``: ``X-Tarmac-Signature``/``X-Tarmac-Timestamp``, retries with backoff,
    bounded by ``max_seconds``); ``Idempotency-Key`` is ``<chain>-<seq>``. Publish-only: a
    webhook cannot be read back."""

    def __init__(self, url: str, secret: str, *, project: str, timeout: float = 5.0,
                 retries: int = 2, backoff: float = 0.5, max_seconds: float = 15.0,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url, self.secret, self.project = url, secret, project
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.max_seconds, self.transport, self.sleep = max_seconds, transport, sleep

    @property
    def where(self) -> str:
        return f"webhook {webhooks.display_name(self.url)}"

    def publish(self, anchor: Anchor) -> None:
        """Send the anchor; ``AnchorFailed`` (its error cleaned of the URL and secret) if no
        attempt got a 2xx."""
        body = json.dumps({"project": self.project, **anchor.to_dict()}, sort_keys=True,
                          separators=(",", ":")).encode("utf-8")
        got = webhooks.post(self.url, body, secret=self.secret, timeout=self.timeout,
                            retries=self.retries, backoff=self.backoff,
                            max_seconds=self.max_seconds,
                            headers={webhooks.KEY_HEADER: f"{anchor.chain}-{anchor.seq}"},
                            user_agent="tarmac-anchors", transport=self.transport,
                            sleep=self.sleep)
        if not got.ok:
            raise AnchorFailed(got.error or "no response")


__all__ = ["Anchor", "AnchorFailed", "AnchorFile", "AnchorObjects", "AnchorPolicy",
           "AnchorStore", "AnchorWebhook", "default_anchor_path"]
