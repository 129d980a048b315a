"""How an entity's key values become the one string the online store files them under.

Python (``encode_key``, on the request path) and DuckDB (``key_sql``, at materialization) must
agree byte for byte, so both live here: values are joined with the unit separator ``\\x1f``,
integers in decimal, strings as they are. ``"42"`` and ``42`` name the same entity.

Which key values a request may give is decided here too, once, for every door: ``key_rule``
(the HTTP layer's validation), ``coerce_key`` / ``key_coercer`` (the SDK's online read) and
``parse_key`` (the CLI's ``--entity k=v`` text) all follow the same rule, so the SDK, the CLI and
the server accept and refuse the same values. An integer key (``int64``, ``int32``) takes an
integer or its decimal string (``"42"``, as Python's ``int`` reads it), never a bool, float or
null; any other key a non-null scalar (string, number or bool).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tarmac.errors import UsageError, echo
from tarmac.lake import quote_ident

SEP = "\x1f"
INT_KINDS = frozenset({"int64", "int32"})


def is_int_key(v: Any) -> bool:
    """An integer, or a string ``int`` reads as one (not a bool: JSON ``true`` is no id)."""
    if type(v) is int:
        return True
    if type(v) is str:
        try:
            int(v)
        except ValueError:
            return False
        return True
    return False


def is_scalar_key(v: Any) -> bool:
    """A non-null scalar: what a string (or otherwise typed) key may be given as."""
    return type(v) in (str, int, float, bool)


@dataclass(frozen=True)
class KeyRule:
    """What values a join key of one declared type accepts: ``check`` says yes or no,
    ``expected`` says what was expected (in errors: "must be an integer"), ``error_type`` is the
    machine-readable kind of the HTTP 422 detail, ``convert`` turns an accepted value into the
    one the store is asked for."""

    check: Callable[[Any], bool]
    expected: str
    error_type: str
    convert: Callable[[Any], Any]


def _same(v: Any) -> Any:
    return v


_INT_RULE = KeyRule(is_int_key, "must be an integer", "int_type", int)
_SCALAR_RULE = KeyRule(is_scalar_key, "must be a string or a number", "key_type", _same)


def key_rule(kind: str | None) -> KeyRule:
    """The rule for a join key whose declared type is ``kind`` (``None``: undeclared)."""
    return _INT_RULE if kind in INT_KINDS else _SCALAR_RULE


def coerce_key(kind: str | None, key: str, value: Any) -> Any:
    """``value`` as the store looks key ``key`` up; ``UsageError`` naming the key (and a short
    echo of the value) if its declared type ``kind`` does not accept it."""
    rule = key_rule(kind)
    if not rule.check(value):
        shown = repr(value) if isinstance(value, str) else value
        raise UsageError(f"entity key '{key}' {rule.expected}, got {echo(shown)}")
    return rule.convert(value)


def key_coercer(kind: str | None, key: str) -> Callable[[Any], Any]:
    """``coerce_key`` for one key, bound once (the online read calls it per entity)."""
    rule = key_rule(kind)
    check, convert = rule.check, rule.convert

    def coerce(value: Any) -> Any:
        return convert(value) if check(value) else coerce_key(kind, key, value)

    return coerce


def parse_key(kind: str | None, text: str) -> Any:
    """A key given as text (``tarmac features get --entity customer_id=42``): an integer key's
    decimal text becomes the integer (so ``--json`` echoes ``42``, as the server would); any
    other text stays text, for ``coerce_key`` to accept or refuse like any request."""
    if kind in INT_KINDS and is_int_key(text):
        return int(text)
    return text


def encode_key(values: Sequence[Any]) -> str:
    """The online-store key of one entity (its join key values, in declared order)."""
    if len(values) == 1:
        v = values[0]
        return ("true" if v else "false") if isinstance(v, bool) else str(v)
    return SEP.join(("true" if v else "false") if isinstance(v, bool) else str(v)
                    for v in values)


def key_sql(columns: Sequence[str]) -> str:
    """DuckDB expression computing ``encode_key`` of each row's key columns."""
    parts = [f"CAST({quote_ident(c)} AS VARCHAR)" for c in columns]
    return parts[0] if len(parts) == 1 else f"concat_ws(chr(31), {', '.join(parts)})"
