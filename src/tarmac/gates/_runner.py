"""``run_gates``: judge one version with every declared gate and return its ``Report``."""

from __future__ import annotations

import time
from collections.abc import Sequence

from tarmac.errors import UsageError
from tarmac.gates._base import Gate, _exception_why
from tarmac.gates._context import GateContext
from tarmac.gates._declare import _Comparable
from tarmac.gates._kinds import SignatureGate
from tarmac.gates.report import GateResult, Report


def run_gates(gates: Sequence[Gate], ctx: GateContext) -> Report:
    """Judge one version with every gate, in order (plus ``signature_compatible()`` when not
    declared). A gate that raises becomes ``error`` with the exception's first line."""
    declared = list(gates)
    for gate in declared:
        if not isinstance(gate, Gate):
            hint = (f"compare it with a threshold, e.g. {gate!r} >= 0.75"
                    if isinstance(gate, _Comparable) else None)
            raise UsageError(f"{gate!r} is not a gate", hint=hint)
    if not any(g.kind == SignatureGate.kind for g in declared):
        declared.append(SignatureGate())
    start = time.perf_counter()
    results = []
    for gate in declared:
        try:
            result = gate.evaluate(ctx)
        except Exception as exc:
            result = GateResult(gate.name, gate.kind, "error", None, None, _exception_why(exc))
        results.append(result)
    return Report(ctx.model, ctx.version, ctx.champion.version if ctx.champion else None,
                  results, time.perf_counter() - start)
