"""The audit trail's hash chain: how a record is hashed and how the chain is verified.

Each record's hash is SHA-256 over its canonical JSON (sequence, time, actor, action, target,
details, previous hash). Editing a record breaks its hash; deleting one leaves a sequence gap and
a broken link; reordering breaks both. Truncating the tail leaves a valid shorter chain, so
``verify`` can also check against an anchor (a sequence number and hash published elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tarmac.catalog import AuditRecord

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
                prev_hash: str) -> AuditRecord:
    h = record_hash(seq, time_us, actor, action, target, details, prev_hash)
    return AuditRecord(seq, time_us, actor, action, target, details, prev_hash, h)


@dataclass(frozen=True)
class Verification:
    """The outcome of checking the chain: ``ok``, how many records, and the first problem."""

    ok: bool
    records: int
    head_seq: int | None
    head_hash: str | None
    bad_seq: int | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head_seq": self.head_seq,
                "head_hash": self.head_hash, "bad_seq": self.bad_seq, "problem": self.problem}


def verify(records: Iterable[AuditRecord], *,
           anchor: tuple[int, str] | None = None) -> Verification:
    """Walk the chain in sequence order and report the first record that does not hold."""
    expected_seq, prev, count = 1, GENESIS, 0
    last: AuditRecord | None = None
    anchor_seen = anchor is None
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
    return Verification(True, count, last.seq if last else None, last.hash if last else None)


def _bad(count: int, last: AuditRecord | None, seq: int, problem: str) -> Verification:
    return Verification(False, count, last.seq if last else None, last.hash if last else None,
                        bad_seq=seq, problem=problem)
