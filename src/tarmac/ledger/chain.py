"""The audit trail's hash chain: how a record is hashed and how the chain is verified.

Each record's hash is SHA-256 over its canonical JSON (sequence, time, actor, action, target,
details, previous hash). Editing a record breaks its hash; deleting one leaves a sequence gap and
a broken link; reordering breaks both. Truncating the tail leaves a valid shorter chain, so
``verify`` can also check against an anchor (a sequence number and hash published elsewhere).

The hash alone does not stop someone who can write the catalog from editing a record and
re-hashing every record after it. With an audit key (``tarmac.ledger.keys``, kept outside the
catalog) each record also carries ``mac``, an HMAC-SHA256 of its hash, and ``key_id``; ``verify``
with the key checks every MAC. Records written before keying was turned on are counted as
unkeyed; an unkeyed record AFTER a keyed one is a stripped MAC, reported as tampering.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tarmac.catalog import AuditRecord
from tarmac.ledger.keys import AuditKey

GENESIS = "0" * 64
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api[_-]?key|credential|auth)", re.I)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
# Built once: json.dumps with options builds a new encoder per call, a visible share of a
# batched append. The output is byte-for-byte what json.dumps gives with the same options.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
_RECORD = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def canonical(details: dict[str, Any]) -> str:
    """Details as canonical JSON, with anything that looks like a secret masked."""
    return _CANONICAL.encode(scrub(details))


def scrub(value: Any, key: str = "") -> Any:
    """Mask secret-looking keys and passwords inside URLs, recursively."""
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, key) for v in value]
    if isinstance(value, str):
        if key and _SECRET_KEY.search(key):
            return "***"
        return _URL_PASSWORD.sub(r"\1***@", value)
    return value


def record_hash(seq: int, time_us: int, actor: str, action: str, target: str, details: str,
                prev_hash: str) -> str:
    """The SHA-256 of one record's fields, hex."""
    payload = _RECORD.encode([seq, time_us, actor, action, target, details, prev_hash])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def batch_digest(ids: Iterable[Any]) -> tuple[int, str]:
    """(count, SHA-256 hex) over a batch's ids, in the order given, for one audit record that
    stands for a whole batch (a prediction-log flush, a stream micro-batch).

    Each id is hashed as its JSON text followed by a newline, so ``1`` and ``"1"`` differ and no
    id can run into the next; anyone holding the ids recomputes the digest to check the record.
    """
    h = hashlib.sha256()
    count = 0
    chunk: list[str] = []  # string ids, hashed in one update per few thousand
    for item in ids:
        if type(item) is str:
            simple = item.isprintable() and '"' not in item and "\\" not in item
            chunk.append(item if simple else json.dumps(item, ensure_ascii=False)[1:-1])
        else:
            _flush(h, chunk)
            h.update(json.dumps(item, ensure_ascii=False, default=str).encode("utf-8") + b"\n")
        count += 1
        if len(chunk) >= 4096:
            _flush(h, chunk)
    _flush(h, chunk)
    return count, h.hexdigest()


def _flush(h: Any, texts: list[str]) -> None:
    """Hash quoted JSON string bodies (``texts``), each followed by a newline, then forget
    them."""
    if texts:
        h.update(('"' + '"\n"'.join(texts) + '"\n').encode("utf-8"))
        texts.clear()


def make_record(seq: int, time_us: int, actor: str, action: str, target: str, details: str,
                prev_hash: str, key: AuditKey | None = None) -> AuditRecord:
    """One chained record; with ``key``, keyed (its ``mac`` and ``key_id`` set)."""
    h = record_hash(seq, time_us, actor, action, target, details, prev_hash)
    if key is None:
        return AuditRecord(seq, time_us, actor, action, target, details, prev_hash, h)
    return AuditRecord(seq, time_us, actor, action, target, details, prev_hash, h,
                       key.mac(h), key.key_id)


#: what kind of problem a failed verification found: ``tampered`` (an edit, a gap, a reorder, a
#: re-hash, a stripped MAC, a cut tail), ``no-key`` (keyed records but no key to check them),
#: ``wrong-key`` (the records were keyed with another key), ``bad-key`` (a key is configured but
#: cannot be read), ``state`` (the catalog disagrees with what the trail says),
#: ``incomplete`` (an empty chain beside a lake Tarmac wrote), ``anchor`` (the published anchor
#: cannot be read)
PROBLEM_KINDS = ("tampered", "no-key", "wrong-key", "bad-key", "state", "incomplete", "anchor")


@dataclass(frozen=True)
class Verification:
    """The outcome of checking the chain: ``ok``, how many records, and the first problem
    (``kind`` one of ``PROBLEM_KINDS``); ``keyed`` / ``unkeyed`` count records with and without
    a MAC; ``state`` lists every catalog row that disagrees with the trail."""

    ok: bool
    records: int
    head_seq: int | None
    head_hash: str | None
    bad_seq: int | None = None
    problem: str | None = None
    kind: str | None = None
    keyed: int = 0
    unkeyed: int = 0
    state: tuple[str, ...] = ()
    anchor: tuple[int, str] | None = None  # the anchor checked against, if any

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head_seq": self.head_seq,
                "head_hash": self.head_hash, "bad_seq": self.bad_seq, "problem": self.problem,
                "kind": self.kind, "keyed": self.keyed, "unkeyed": self.unkeyed,
                "state": list(self.state),
                "anchor": f"{self.anchor[0]}:{self.anchor[1]}" if self.anchor else None}


def verify(records: Iterable[AuditRecord], *, anchor: tuple[int, str] | None = None,
           key: AuditKey | None = None) -> Verification:
    """Walk the chain in sequence order and report the first record that does not hold.

    With ``key``, every keyed record's MAC is checked too; without it, a chain holding keyed
    records is reported as ``no-key`` (its hashes alone prove nothing against a re-hash)."""
    expected_seq, prev, count = 1, GENESIS, 0
    last: AuditRecord | None = None
    anchor_seen = anchor is None
    keyed = unkeyed = 0
    first_keyed: AuditRecord | None = None
    for rec in records:
        count += 1
        if rec.seq != expected_seq:
            what = (f"record {expected_seq} is missing (deleted?): the next record has sequence "
                    f"{rec.seq}") if rec.seq > expected_seq else (
                    f"record {rec.seq} is out of order after {expected_seq - 1}")
            return _bad(count, last, expected_seq, what)
        if rec.prev_hash != prev:
            return _bad(count, last, rec.seq,
                        f"record {rec.seq} ({rec.action} {rec.target}) does not link to record "
                        f"{rec.seq - 1}: a record before it was changed, removed or reordered")
        if record_hash(rec.seq, rec.time_us, rec.actor, rec.action, rec.target, rec.details,
                       rec.prev_hash) != rec.hash:
            return _bad(count, last, rec.seq,
                        f"record {rec.seq} ({rec.action} {rec.target} by {rec.actor}) was edited: "
                        "its contents no longer match its hash")
        if rec.mac is None:
            if first_keyed is not None:
                return _bad(count, last, rec.seq,
                            f"record {rec.seq} ({rec.action} {rec.target}) carries no MAC but "
                            f"record {first_keyed.seq} before it does: its MAC was stripped "
                            "(the chain re-hashed without the key?) or it was written by a "
                            "process without the audit key")
            unkeyed += 1
        else:
            keyed += 1
            if first_keyed is None:
                first_keyed = rec
                if key is not None and rec.key_id != key.key_id:
                    return _bad(count, last, rec.seq,
                                f"the audit trail is keyed with key id {rec.key_id} (from record "
                                f"{rec.seq} on) but the configured key ({key.source}) has id "
                                f"{key.key_id}: wrong audit key", kind="wrong-key")
            if key is not None and (rec.key_id != key.key_id
                                    or not hmac.compare_digest(rec.mac, key.mac(rec.hash))):
                return _bad(count, last, rec.seq,
                            f"record {rec.seq} ({rec.action} {rec.target} by {rec.actor}) does "
                            "not carry a valid MAC for the audit key: the chain was re-hashed "
                            "or the record forged by someone without the key")
        if anchor is not None and rec.seq == anchor[0]:
            if rec.hash != anchor[1]:
                return _bad(count, last, rec.seq,
                            f"record {rec.seq} does not match the anchor hash {anchor[1][:12]}…")
            anchor_seen = True
        prev, expected_seq, last = rec.hash, rec.seq + 1, rec
    if not anchor_seen:
        assert anchor is not None
        return _bad(count, last, anchor[0],
                    f"the chain ends at record {expected_seq - 1} but the anchor names record "
                    f"{anchor[0]}: records were removed from the end")
    if keyed and key is None:
        assert first_keyed is not None
        return _bad(count, last, first_keyed.seq,
                    f"{keyed:,} record(s) from record {first_keyed.seq} on are keyed, but no "
                    "audit key is configured: their MACs cannot be checked, so a re-hashed "
                    "chain would look intact", kind="no-key", keyed=keyed, unkeyed=unkeyed)
    return Verification(True, count, last.seq if last else None, last.hash if last else None,
                        keyed=keyed, unkeyed=unkeyed, anchor=anchor)


def _bad(count: int, last: AuditRecord | None, seq: int, problem: str, *,
         kind: str = "tampered", keyed: int = 0, unkeyed: int = 0) -> Verification:
    return Verification(False, count, last.seq if last else None, last.hash if last else None,
                        bad_seq=seq, problem=problem, kind=kind, keyed=keyed, unkeyed=unkeyed)
