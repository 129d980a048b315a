"""What a validation run found: one result per gate and the report that sums them up.

The report is what ``tarmac validate`` prints, what the registry stores with the version (as a
dict) and what CI posts on the pull request (as Markdown); its exit code is the CLI's:
0 passed, 1 a gate failed, 2 a gate could not run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("passed", "failed", "skipped", "error")
_ICONS = {"passed": "✅", "failed": "❌", "skipped": "⏭️", "error": "⚠️"}


def fmt(value: float | str | None, digits: int = 4) -> str:
    """A number for people: 4 significant digits, no exponent for everyday magnitudes,
    thousands separators (``0.8123``, ``12,350``, ``3``); text as is; None as ``—``."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    v = float(value)
    if not math.isfinite(v) or v == 0:
        return "0" if v == 0 else str(v)
    magnitude = math.floor(math.log10(abs(v)))
    if not -4 <= magnitude < 15:
        return f"{v:.{digits}g}"
    decimals = digits - 1 - magnitude
    if decimals <= 0:
        return f"{round(v, decimals):,.0f}"
    text = f"{v:,.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass
class GateResult:
    """One gate's outcome: status, the measured value, the threshold and a readable why."""

    name: str
    kind: str
    status: str  # "passed" | "failed" | "skipped" | "error"
    value: float | str | None
    threshold: str | None  # e.g. ">= 0.75"
    why: str  # always a sentence a person can act on
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what the registry stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateResult:
        """The result back from ``to_dict``."""
        return cls(name=d["name"], kind=d["kind"], status=d["status"], value=d.get("value"),
                   threshold=d.get("threshold"), why=d.get("why", ""),
                   details=dict(d.get("details") or {}))


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


@dataclass
class Report:
    """Every gate's result for one model version, against its champion if there is one."""

    model: str
    version: int
    champion: int | None
    results: list[GateResult]
    seconds: float

    def count(self, status: str) -> int:
        """How many gates ended with ``status``."""
        return sum(r.status == status for r in self.results)

    @property
    def status(self) -> str:
        """``error`` if a gate could not run, else ``failed`` if one failed, else ``passed``
        (skipped gates do not fail a version)."""
        if self.count("error"):
            return "error"
        return "failed" if self.count("failed") else "passed"

    @property
    def exit_code(self) -> int:
        """The CLI's exit code: 0 passed, 1 failed, 2 error."""
        return {"passed": 0, "failed": 1, "error": 2}[self.status]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict, with the overall status for readers that do not recompute it."""
        return {"model": self.model, "version": self.version, "champion": self.champion,
                "status": self.status, "seconds": self.seconds,
                "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """The report back from ``to_dict``."""
        return cls(model=d["model"], version=int(d["version"]), champion=d.get("champion"),
                   results=[GateResult.from_dict(r) for r in d.get("results", [])],
                   seconds=float(d.get("seconds", 0.0)))

    def headline(self) -> str:
        """One line: ``churn v4 failed 2 of 7 gates``."""
        who = f"{self.model} v{self.version}"
        total = len(self.results)
        if self.status == "passed":
            return f"{who} passed its gates"
        if self.status == "failed":
            return f"{who} failed {self.count('failed')} of {_plural(total, 'gate')}"
        errors = self.count("error")
        text = f"{who}: {_plural(errors, 'gate')} could not run"
        failed = self.count("failed")
        return f"{text}, {failed} failed" if failed else text

    def to_markdown(self) -> str:
        """The report as a pull-request comment: heading, champion line, one table row per
        gate and the time taken. Deterministic, so it can be compared and tested."""
        icon = {"passed": "✅", "failed": "❌", "error": "⚠️"}[self.status]
        lines = [f"### {icon} {self.headline()}", ""]
        if self.champion is None:
            lines.append("No champion yet: regression and signature gates were skipped")
        else:
            lines.append(f"Compared with champion v{self.champion}")
        lines += ["", "| Gate | Result | Value | Threshold | Why |", "|---|---|---|---|---|"]
        for r in self.results:
            cells = [r.name, f"{_ICONS.get(r.status, '')} {r.status}".strip(), fmt(r.value),
                     r.threshold or "—", r.why]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines += ["", f"_{_plural(len(self.results), 'gate')} checked in {self.seconds:.2f} s_"]
        return "\n".join(lines) + "\n"
