"""Numbers for people, shared by the terminal output and the HTML reports."""

from __future__ import annotations


def size(n: int | None) -> str:
    """Bytes for people: ``1.2 MB`` (``-`` when unknown)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover
