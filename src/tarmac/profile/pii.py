"""Personal data in columns: detection by column name and by sampled values.

Public because more than the survey needs it: governance tags and masks columns, monitoring
watches prediction logs, and both work on lake tables rather than ingest samples. Everything
here takes Arrow data and runs vectorised (regular expressions in Arrow's RE2 kernels, the Luhn
check on a digit matrix), looking at most at ``VALUE_CHECK_LIMIT`` values per column.

Example::

    import pyarrow as pa
    from tarmac.profile.pii import detect_pii

    table = pa.table({"contact": ["ann@example.com", "bob@example.org"], "n": [1, 2]})
    [(f.column, f.kind, f.by) for f in detect_pii(table)]   # [('contact', 'email', ['values'])]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tarmac.profile.arrays import as_string_array as _as_string_array
from tarmac.profile.arrays import is_text as _is_text
from tarmac.profile.arrays import non_null as _non_null
from tarmac.profile.arrays import share as _share

PII_KINDS = ("email", "phone", "name", "card", "ip")
PII_THRESHOLD = 0.6  # share of sampled non-null values that must look like personal data
NAME_THRESHOLD = 0.8  # person names by values alone are easy to confuse (product names...)
VALUE_CHECK_LIMIT = 20_000  # non-null values per column the value detectors look at
_PERSONAL_TABLES = re.compile(
    r"customer|client|user|person|people|contact|member|employee|staff|patient|subscriber|"
    r"account|lead|crm|student|guest|passenger|driver|buyer|seller")
_NOT_PERSON = re.compile(
    r"product|plan|sku|item|city|country|region|state|street|company|brand|category|title|"
    r"model|device|team|store|shop|file|table|host|server|event|page|campaign|tag|label|type")



class Tagged(Protocol):
    """A column declaration carrying tags (``tarmac.ingest.spec.ColumnSpec`` is one)."""

    @property
    def tags(self) -> Iterable[str]: ...


@dataclass
class PiiFinding:
    """A column that looks like personal data, why, and whether the source already tags it."""

    column: str
    kind: str  # email | phone | name | card | ip
    by: list[str]  # "name", "values" or both
    share: float | None  # share of sampled non-null values that look like ``kind``
    tagged: bool

    @property
    def reason(self) -> str:
        parts = []
        if "name" in self.by:
            parts.append(f"column name '{self.column}'")
        if "values" in self.by and self.share is not None:
            parts.append(f"{self.share:.0%} of sampled values")
        return " and ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "kind": self.kind, "by": list(self.by),
                "share": self.share, "tagged": self.tagged, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PiiFinding:
        return cls(**{k: v for k, v in d.items() if k != "reason"})



#: column names that say what a column holds (matched on the snake_cased name)
NAME_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"e_?mail"),
    "phone": re.compile(r"phone|(^|_)(mobile|msisdn|tel|telephone|cell|fax)(_|$)"),
    "name": re.compile(r"(^|_)(first|last|full|given|family|middle|maiden|sur|fore|legal|"
                       r"contact|customer|person|cardholder|holder|display)_?name$|"
                       r"^(surname|forename|fullname|firstname|lastname)$"),
    "card": re.compile(r"credit_?card|card_?(number|num|no|pan)$|(^|_)(cc|pan)(_?(number|num|no))?$"
                       r"|^ccn$"),
    "ip": re.compile(r"(^|_)ip(_?(addr|address|v4|v6))?(_|$)|ip_?address|ipv[46]|"
                     r"(remote|client|source|src)_addr"),
}
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(\.{_OCTET}){{3}}"
_H = "[0-9A-Fa-f]{1,4}"
_IPV6 = ("(" + "|".join([
    rf"({_H}:){{7}}{_H}",
    rf"({_H}:){{1,7}}:",
    rf"({_H}:){{1,6}}:{_H}",
    rf"({_H}:){{1,5}}(:{_H}){{1,2}}",
    rf"({_H}:){{1,4}}(:{_H}){{1,3}}",
    rf"({_H}:){{1,3}}(:{_H}){{1,4}}",
    rf"({_H}:){{1,2}}(:{_H}){{1,5}}",
    rf"{_H}:(:{_H}){{1,6}}",
    rf":((:{_H}){{1,7}}|:)",
    rf"fe80:(:{_H}){{0,4}}%[0-9A-Za-z]+",
    rf"::([fF]{{4}}(:0{{1,4}})?:)?{_IPV4}",
    rf"({_H}:){{1,4}}:{_IPV4}",
]) + ")")
_WORD = r"\p{Lu}[\p{L}'’-]*\p{Ll}"
#: what the values of each kind look like (RE2 syntax, matched on trimmed text)
VALUE_PATTERNS: dict[str, str] = {
    "email": r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$",
    "phone": (r"^((\+|00)[1-9][0-9 ().-]{6,18}[0-9]|"
              r"\(?[0-9]{2,4}\)?[ .-]?[0-9]{2,4}[ .-][0-9]{2,5}([ .-][0-9]{2,5})?)$"),
    "name": (rf"^({_WORD}( ({_WORD}|\p{{Lu}}\.|van|von|de|da|del|der|di|du|le|la|bin|al))"
             rf"{{0,3}} {_WORD}|{_WORD}, {_WORD})$"),
    "card": r"^[0-9]([ -]?[0-9]){12,18}$",
    "ip": rf"^({_IPV4}|{_IPV6})$",
}
_NOT_PHONE = (rf"^([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}|[0-9]{{1,2}}[/.-][0-9]{{1,2}}[/.-][0-9]{{2,4}}"
              rf"|{_IPV4})$")  # dates and IPv4 addresses have phone-like shapes


def snake(name: str) -> str:
    """``customerEmail`` / ``Customer Email`` -> ``customer_email`` (for name matching)."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


def kinds_by_name(column: str) -> list[str]:
    """The personal-data kinds a column's name announces (``email_address`` -> ``[email]``)."""
    s = snake(column)
    return [kind for kind, pattern in NAME_PATTERNS.items() if pattern.search(s)]


def luhn_valid(values: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """Whether each value is a 13-19 digit number (spaces and dashes allowed) passing the Luhn
    check that payment card numbers carry. Vectorised: digits are laid out in a fixed-width
    matrix (left-padded with zeros, which the checksum ignores). Nulls stay null."""
    arr = _as_string_array(values)
    digits = pc.replace_substring_regex(arr, r"[ -]", "")
    shaped = pc.and_(pc.match_substring_regex(digits, r"^[0-9]{13,19}$"),
                     pc.invert(pc.match_substring_regex(digits, r"^0+$")))
    ok = np.zeros(len(arr), dtype=bool)
    idx = np.flatnonzero(pc.fill_null(shaped, False).to_numpy(zero_copy_only=False))
    if idx.size:
        padded = pc.utf8_lpad(pc.take(digits, pa.array(idx)), width=19, padding="0")
        padded = padded.combine_chunks() if isinstance(padded, pa.ChunkedArray) else padded
        offsets = np.frombuffer(padded.buffers()[1], dtype=np.int32)[padded.offset:]
        start = int(offsets[0])
        data = np.frombuffer(padded.buffers()[2], dtype=np.uint8)
        mat = (data[start:start + 19 * idx.size].reshape(idx.size, 19) - 48).astype(np.int64)
        double = (18 - np.arange(19)) % 2 == 1  # every second digit from the right
        mat[:, double] *= 2
        mat[mat > 9] -= 9
        ok[idx] = mat.sum(axis=1) % 10 == 0
    return pc.if_else(pc.is_null(arr), pa.scalar(None, pa.bool_()), pa.array(ok))


def looks_like(kind: str, values: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """Per value: does it look like ``kind`` (email, phone, name, card, ip)? Nulls stay null."""
    if kind not in VALUE_PATTERNS:
        raise ValueError(f"unknown kind {kind!r}; expected one of: {', '.join(PII_KINDS)}")
    s = pc.utf8_trim_whitespace(_as_string_array(values))
    hit = pc.match_substring_regex(s, VALUE_PATTERNS[kind])
    if kind == "phone":
        hit = pc.and_(hit, pc.invert(pc.match_substring_regex(s, _NOT_PHONE)))
    elif kind == "card":
        hit = pc.and_(hit, luhn_valid(s))
    return hit



def value_shares(values: pa.Array | pa.ChunkedArray,
                 kinds: Iterable[str] = PII_KINDS) -> dict[str, float]:
    """Share of the non-null values (at most ``VALUE_CHECK_LIMIT``) that look like each kind."""
    head = _non_null(values, VALUE_CHECK_LIMIT)
    if not len(head):
        return {}
    return {kind: round(_share(looks_like(kind, head)), 4) for kind in kinds}


def detect_pii(table: pa.Table, declared: Mapping[str, Tagged] | None = None, *,
               stream: str = "", threshold: float = PII_THRESHOLD) -> list[PiiFinding]:
    """Columns of ``table`` that look like personal data, by name and by sampled values.

    A name such as ``email`` or ``phone_number`` is enough; a value kind counts when at least
    ``threshold`` of the non-null sampled values match it (person names need more, 80%, since
    product and place names look alike). A bare ``name`` column counts as a person's name when
    the stream is about people (``customers``, ``users``...). ``declared`` columns tagged
    ``pii`` or with the kind are reported as tagged.
    """
    declared = declared or {}
    people = bool(_PERSONAL_TABLES.search(stream.lower()))
    out: list[PiiFinding] = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        s = snake(name)
        by_name = set(kinds_by_name(name))
        if s == "name" and people:
            by_name.add("name")
        shares: dict[str, float] = {}
        t = col.type
        if _is_text(t):
            kinds = [k for k in PII_KINDS if k != "name" or not _NOT_PERSON.search(s)]
            shares = value_shares(col, kinds)
        elif pa.types.is_integer(t):  # card numbers stored as numbers
            shares = value_shares(col, ["card"])
        by_value = {k for k, share in shares.items()
                    if share >= (max(threshold, NAME_THRESHOLD) if k == "name" else threshold)}
        if "card" in by_value and "phone" in by_value:  # a 16-digit card is not a phone
            by_value.discard("phone")
        for kind in PII_KINDS:
            if kind not in by_name and kind not in by_value:
                continue
            by = [b for b, hit in (("name", kind in by_name), ("values", kind in by_value))
                  if hit]
            out.append(PiiFinding(name, kind, by, shares.get(kind),
                                  _tagged(declared, name, kind)))
    return out


def _tagged(declared: Mapping[str, Tagged], column: str, kind: str) -> bool:
    spec = declared.get(column)
    if spec is None:
        spec = next((c for n, c in declared.items() if n.lower() == column.lower()), None)
    if spec is None:
        return False
    tags = {t.lower() for t in spec.tags}
    return bool(tags & {"pii", "personal", "sensitive", kind, f"pii:{kind}", f"pii.{kind}"})


__all__ = ["NAME_PATTERNS", "NAME_THRESHOLD", "PII_KINDS", "PII_THRESHOLD", "VALUE_CHECK_LIMIT",
           "VALUE_PATTERNS", "PiiFinding", "Tagged", "detect_pii", "kinds_by_name", "looks_like",
           "luhn_valid", "snake", "value_shares"]
