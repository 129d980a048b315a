"""How the CLI shows things: Rich tables for people, a JSON array of objects for scripts.

Data is never markup: every value, name, error and hint that reaches a Rich console goes
through :func:`esc` (``emit`` does it for table cells), and Rich's ``:emoji:`` codes are off,
so ``a:x:b`` and ``[bold]`` print as they are.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tarmac.humanize import size  # noqa: F401  (re-exported for the commands)

# Piped output has no terminal width; 80 columns would fold every id and time, so use 160.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(highlight=False, emoji=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, emoji=False, width=_WIDTH)


def esc(value: Any) -> str:
    """``value`` as text that Rich prints verbatim (``[x]`` is not read as markup)."""
    return escape(value if isinstance(value, str) else str(value))


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], *, as_json: bool,
         title: str | None = None, empty: str = "nothing to show") -> None:
    """Print ``rows`` as a table of ``columns`` (key, header), or all of each row as JSON."""
    if as_json:
        print_json(list(rows))
        return
    if not rows:
        console.print(f"[dim]{esc(empty)}[/dim]")
        return
    table = Table(title=esc(title) if title else None, title_justify="left", header_style="bold")
    for _, header in columns:
        table.add_column(esc(header), overflow="fold")
    for row in rows:
        table.add_row(*(esc(human(row.get(key))) for key, _ in columns))
    console.print(table)


def print_json(value: Any) -> None:
    """Strict JSON on stdout: NaN and infinities (which ``json.dumps`` would write as the
    invalid ``NaN``/``Infinity``) become the strings "NaN", "Infinity", "-Infinity"."""
    sys.stdout.write(json.dumps(_strict(value), indent=2, default=_jsonable, allow_nan=False)
                     + "\n")


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def human(value: Any) -> str:
    """A cell: times as ages, None as a dash, numbers with thousands separators."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def utc(us: int | None) -> datetime | None:
    """A catalog time (UTC microseconds since the epoch) as an aware datetime (``None`` stays)."""
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


def age(when: datetime) -> str:
    """'3m ago', '2h ago', '5d ago'."""
    delta = datetime.now(UTC) - (when if when.tzinfo else when.replace(tzinfo=UTC))
    seconds = int(delta.total_seconds())
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds // span}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def error_line(error: str | None, width: int = 120) -> str | None:
    """The line of a recorded error a table shows: the exception, not its hint or traceback.

    A run's error is ``Type: message`` (maybe followed by ``  hint: ...`` lines) or a whole
    traceback, whose exception line is the first one after the last traceback's indented frames.
    """
    if not error or not error.strip():
        return None
    lines = [line for line in error.strip().splitlines() if line.strip()]
    last = max((i for i, line in enumerate(lines) if line.startswith("Traceback")), default=-1)
    if last >= 0:
        raised = [line for line in lines[last + 1:] if not line.startswith((" ", "\t"))]
        lines = raised or lines
    first = lines[0].strip()
    return first if len(first) <= width else first[: width - 3] + "..."
