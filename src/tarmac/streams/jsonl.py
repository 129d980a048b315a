"""JSON lines in, records out: every line parsed before anything is produced."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tarmac.errors import UsageError, echo


def parse_jsonl(lines: Iterable[str | bytes], *, source: str = "input") -> list[Any]:
    """The JSON value of each non-blank line; ``UsageError`` naming the first bad line (by its
    1-based number) so that a file is produced whole or not at all."""
    return numbered_jsonl(lines, source=source)[0]


def numbered_jsonl(lines: Iterable[str | bytes], *,
                   source: str = "input") -> tuple[list[Any], list[int]]:
    """``parse_jsonl``'s values and, for each, the 1-based number of its line (blank lines are
    skipped, so errors about a record can name the line it came from)."""
    out: list[Any] = []
    numbers: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
            numbers.append(number)
        except (UnicodeDecodeError, ValueError) as exc:
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            raise UsageError(f"{source} line {number} is not JSON ({exc}): "
                             f"{echo(text.strip())}; "
                             "nothing was produced",
                             hint="one JSON record per line") from None
    return out, numbers
