"""The closed retraining loop: a monitor's ``on_decay``/``on_drift`` policy, carried out.

A monitor result that calls for it starts a loop (``start_loop``): the model is retrained on
the newest data (its own ``@model`` function, a new version), the version is validated against
the champion, and then, per the policy (``retrain(promote=...)``):

* ``direct``: promoted at once (the gated promotion);
* ``approval``: the loop waits in ``awaiting_approval`` for ``approve`` (``tarmac approve``)
  or ``reject``;
* ``canary``: deployed as the endpoint's canary for ``canary_percent`` of entities; once
  ``canary_for`` has passed, ``advance_loops`` asks whether the canary's own predictions pass
  (``canary_verdict``) and promotes it (``then="promote_if_gates_pass"``, the gated
  ``deploy(promote_canary=True)``) or moves it to ``awaiting_approval``
  (``then="wait_for_approval"``); a failing canary is aborted.

States (the ``retrain_loops`` catalog table): ``training`` -> ``awaiting_approval`` | ``canary``
-> ``promoted`` | ``failed`` | ``rejected`` | ``superseded`` (the champion was changed by hand
while the loop waited, so its comparison no longer holds). A loop that fails (training raised,
gates failed, the canary failed or could not start) alerts through the monitor's channels
(check ``retrain``) and leaves the champion as it was; a later promoted loop resolves the alert.
Nothing here promotes a version whose gates failed: every promotion goes through the
registry's gate check.

One loop per model is open at a time, and none starts sooner than the policy's ``cooldown``
after the last one started (``why_not`` says which holds). Every step is an audit record
(``retrain.started``, ``retrain.trained``, ``retrain.gates_failed``, ``retrain.canary_started``,
``retrain.awaiting_approval``, ``retrain.approved``, ``retrain.promoted``, ``retrain.failed``,
``retrain.rejected``, ``retrain.superseded``) naming the loop and the monitor run that
triggered it. The training runs inside a ledger run ``retrain:MODEL`` whose input is
``monitor_run:RUN_ID`` and whose output is the new ``model:MODEL@V``, so ``tarmac lineage
model:churn@4`` leads back to the monitor result; the version is also tagged
``retrain_loop``/``trigger_run``/``monitor``.

Example::

    from tarmac.monitoring.loop import advance_loops, approve, start_loop
    loop = start_loop(p, definition, definition.on_decay, trigger_run=run.run_id,
                      trigger={"checks": [{"check": "performance", "metric": "roc_auc"}]})
    loop.state, loop.version                 # ('canary', 4)
    advance_loops(p, [definition])           # after canary_for: promoted, or aborted
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from tarmac.catalog import DatasetVersion, now_us
from tarmac.catalog import deployments as dcat
from tarmac.catalog import models as mcat
from tarmac.catalog.monitors import (
    OPEN_LOOP_STATES,
    LoopState,
    RetrainLoop,
    add_loop,
    get_loop,
    retrain_loops,
    update_loop,
)
from tarmac.errors import ConflictError, PromotionRefused, TarmacError, UsageError
from tarmac.humanize import duration
from tarmac.monitoring.alerts import Alerter, CheckResult
from tarmac.monitoring.canary import canary_check
from tarmac.monitoring.declare import MonitorDefinition, RetrainPolicy, retrain

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from tarmac.project import Project

CHAMPION = "champion"
#: the check name a loop's alerts carry (one alert episode per monitor)
CHECK = "retrain"
#: characters of an error kept in a loop's reason
REASON_CHARS = 500

CanaryVerdict = Callable[[RetrainLoop], str]
_log = logging.getLogger("tarmac.retrain")


class _LoopFailed(Exception):
    """The loop was recorded as failed inside its ledger run; ends the run as failed."""

    def __init__(self, loop: RetrainLoop) -> None:
        super().__init__(loop.reason or "the retraining loop failed")
        self.loop = loop


class _Refused(Exception):
    """Another loop is open or the cooldown holds (found inside the transaction)."""


# -- starting a loop ---------------------------------------------------------------------------


def why_not(project: Project, model: str, policy: RetrainPolicy, *,
            now: datetime | None = None) -> str | None:
    """Why a retraining loop of ``model`` may not start now (``None`` if it may): a loop of it
    is still open, or the last one started less than ``policy.cooldown`` ago. A loop left in
    ``training`` by a process that died is marked failed first, so it blocks nothing."""
    for loop in retrain_loops(project.catalog, model=model, states=("training",), limit=5):
        _reap(project, loop)
    return _blocked(retrain_loops(project.catalog, model=model, limit=1),
                    retrain_loops(project.catalog, model=model, states=OPEN_LOOP_STATES,
                                  limit=1), model, policy, _us(now))


def start_loop(project: Project, definition: MonitorDefinition, policy: RetrainPolicy, *,
               trigger_run: str, trigger: Mapping[str, Any],
               now: datetime | None = None) -> RetrainLoop | None:
    """Run ``policy`` for the model ``definition`` watches, triggered by the monitor run
    ``trigger_run`` (``trigger``: what failed, e.g. the failing checks; an int
    ``results_version`` in it is recorded as the ``monitor_results`` table version read).

    Returns the loop as it stands when this call ends (``promoted``, ``canary``,
    ``awaiting_approval`` or ``failed``), or ``None`` when it may not start (``why_not``: a
    loop of the model is open, or the cooldown holds; logged on ``tarmac.retrain``).

    Example::

        loop = start_loop(p, churn_monitor, retrain(promote="direct"),
                          trigger_run=run_id, trigger={"checks": ["performance:roc_auc"]})
        loop.state, loop.champion, loop.version      # ('promoted', 3, 4)
    """
    model = definition.model
    at = _us(now)
    refused = why_not(project, model, policy, now=now)
    if refused is not None:
        _log.info("retraining of %s not started: %s", model, refused)
        return None
    champion = _champion(project, model)
    loop = RetrainLoop(str(uuid.uuid4()), definition.name, model, trigger_run, dict(trigger),
                       policy.spec(), "training", champion, None, None, None, at, at)
    ledger = project.ledger
    try:
        with ledger.run(f"retrain:{model}", params={"loop": loop.id, "monitor": loop.monitor,
                                                    "trigger_run": trigger_run}) as run:
            run.add_input(f"monitor_run:{trigger_run}", None)
            results_version = trigger.get("results_version")
            if isinstance(results_version, int) and not isinstance(results_version, bool):
                run.add_input("monitor_results", results_version)

            def add(conn: Connection) -> None:
                blocked = _blocked(retrain_loops(conn, model=model, limit=1),
                                   retrain_loops(conn, model=model, states=OPEN_LOOP_STATES,
                                                 limit=1), model, policy, at)
                if blocked is not None:
                    raise _Refused(blocked)
                add_loop(conn, loop)

            ledger.commit("retrain.started", f"model:{model}",
                          {**_about(loop), "policy": loop.policy, "champion": champion},
                          change=add, run=run)
            done = _carry_out(project, policy, loop, run, at)
    except _Refused as exc:
        _log.info("retraining of %s not started: %s", model, exc)
        return None
    except _LoopFailed as exc:
        done = exc.loop
    _alert(project, definition, done)
    return done


def _carry_out(project: Project, policy: RetrainPolicy, loop: RetrainLoop, run: Any,
               at: int) -> RetrainLoop:
    """Train, tag, validate and act on the policy, inside the loop's ledger run."""
    model = loop.model
    try:
        trained = project.models.train(model, params=dict(policy.params) or None)
    except Exception as exc:  # noqa: BLE001 - any training error fails the loop, not the monitor
        raise _LoopFailed(_fail(project, loop, "training",
                                f"training failed: {_text(exc)}")) from exc
    version = trained.version

    def set_version(conn: Connection) -> None:
        _cas(update_loop(conn, loop.id, expect="training", version=version), loop, "training")

    project.ledger.commit("retrain.trained", f"model:{model}",
                          {**_about(loop), "version": version, "train_run": trained.run_id,
                           "metrics": trained.metrics},
                          change=set_version, run=run,
                          output=DatasetVersion(f"model:{model}", version))
    loop = _reload(project, loop)
    try:
        project.models.annotate(model, version, tags={
            "retrain_loop": loop.id, "trigger_run": loop.trigger_run, "monitor": loop.monitor})
        report = project.models.validate(model, version)
    except Exception as exc:  # noqa: BLE001
        raise _LoopFailed(_fail(project, loop, "training",
                                f"validating v{version} failed: {_text(exc)}")) from exc
    if report.status != "passed":
        failing = [{"gate": r.name, "status": r.status, "value": r.value,
                    "threshold": r.threshold, "why": r.why}
                   for r in report.results if r.status in ("failed", "error")]
        raise _LoopFailed(_fail(
            project, loop, "training",
            f"v{version} did not pass its gates against the champion: "
            + "; ".join(str(f["gate"]) for f in failing[:4]),
            action="retrain.gates_failed", details={"failing": failing,
                                                    "status": report.status}))
    if policy.promote == "direct":
        return _promote(project, loop, "training", reason=f"retraining loop {loop.id[:8]}: "
                        f"gates passed (trigger {loop.trigger_run[:8]})")
    if policy.promote == "approval":
        return _move(project, loop, "retrain.awaiting_approval", expect="training",
                     details={"version": version,
                              "next": f"tarmac approve {model} {version} --reason ..."},
                     state="awaiting_approval")
    return _start_canary(project, loop, policy, "training", at)


def _start_canary(project: Project, loop: RetrainLoop, policy: RetrainPolicy, expect: str,
                  at: int) -> RetrainLoop:
    """Deploy the loop's version as the canary; an endpoint with a canary of someone else's
    keeps it and the loop waits for approval instead (``approve`` starts the canary)."""
    busy = dcat.get_deployment(project.catalog, loop.model).canary_version
    if busy is not None and busy != loop.version:
        return _move(project, loop, "retrain.awaiting_approval", expect=expect,
                     details={"version": loop.version, "canary_busy": busy},
                     state="awaiting_approval",
                     reason=f"'{loop.model}' already has canary v{busy}: approve to start this "
                            "loop's canary once it has ended")
    try:
        if busy is None:
            project.serving.deploy(loop.model, canary=loop.version,
                                   percent=policy.canary_percent,
                                   reason=f"retraining loop {loop.id[:8]}")
    except TarmacError as exc:
        raise _LoopFailed(_fail(project, loop, expect,
                                f"the canary of v{loop.version} could not start: "
                                f"{_text(exc)}")) from None
    return _move(project, loop, "retrain.canary_started", expect=expect,
                 details={"version": loop.version, "percent": policy.canary_percent,
                          "canary_for": duration(policy.canary_for.total_seconds())},
                 state="canary", canary_since=at, reason=None)


# -- moving loops on ----------------------------------------------------------------------------


def advance_loops(project: Project, definitions: Iterable[MonitorDefinition] = (), *,
                  now: datetime | None = None,
                  canary_verdict: CanaryVerdict | None = None) -> list[RetrainLoop]:
    """Move open loops on; returns the loops whose state changed, as they are now.

    A canary whose ``canary_for`` has passed is judged by ``canary_verdict(loop)``:
    ``"passed"`` promotes it (gated) or moves it to ``awaiting_approval`` per the policy's
    ``then``; ``"failed"`` aborts the canary, fails the loop and alerts; anything else
    (``"not enough data"``) waits for the next call. Without ``canary_verdict`` the default is
    ``tarmac.monitoring.canary.canary_check`` on the prediction log, with the monitor's
    ``slo()`` error rate and p99 as its limits. A loop whose champion was changed by hand
    meanwhile is ``superseded`` (its canary, if still deployed, is aborted); a canary removed
    by hand fails its loop; a loop left in ``training`` by a dead process fails.
    ``definitions`` give the monitors' alert channels and SLOs; call this on every scheduler
    tick.

    Example::

        changed = advance_loops(p, monitors, canary_verdict=lambda loop: "passed")
        [(loop.model, loop.state) for loop in changed]     # [('churn', 'promoted')]
    """
    by_name = {d.name: d for d in definitions}
    at = _us(now)
    changed = []
    for loop in retrain_loops(project.catalog, states=OPEN_LOOP_STATES, limit=1000):
        definition = by_name.get(loop.monitor)
        try:
            moved = _advance(project, loop, definition, at, canary_verdict)
        except _LoopFailed as exc:
            moved = exc.loop
        except ConflictError as exc:  # another process moved it first
            _log.info("retraining loop %s: %s", loop.id[:8], exc.message)
            continue
        if moved is not None:
            _alert(project, definition, moved)
            changed.append(moved)
    return changed


def _advance(project: Project, loop: RetrainLoop, definition: MonitorDefinition | None,
             at: int, canary_verdict: CanaryVerdict | None) -> RetrainLoop | None:
    if loop.state == "training":
        return _reap(project, loop)
    superseded = _superseded(project, loop)
    if superseded is not None:
        return superseded
    if loop.state != "canary" or loop.canary_since is None:
        return None
    deployed = dcat.get_deployment(project.catalog, loop.model).canary_version
    if deployed != loop.version:
        return _fail(project, loop, "canary",
                     f"the canary v{loop.version} was removed from '{loop.model}' by hand")
    policy = policy_of(loop)
    if at - loop.canary_since < policy.canary_for.total_seconds() * 1_000_000:
        return None
    if canary_verdict is None:
        verdict = canary_check(project, loop, definition=definition).verdict
    else:
        verdict = canary_verdict(loop)
    if verdict == "failed":
        _abort_canary(project, loop)
        return _fail(project, loop, "canary", f"the canary v{loop.version} failed its checks "
                     f"after {duration(policy.canary_for.total_seconds())}")
    if verdict != "passed":
        return None
    if policy.then == "wait_for_approval":
        return _move(project, loop, "retrain.awaiting_approval", expect="canary",
                     details={"version": loop.version, "canary": "passed",
                              "next": f"tarmac approve {loop.model} {loop.version} "
                                      "--reason ..."},
                     state="awaiting_approval")
    return _promote(project, loop, "canary", reason=f"retraining loop {loop.id[:8]}: canary "
                    "passed", canary=True)


def approve(project: Project, model: str, version: int | None = None, *, reason: str,
            definitions: Iterable[MonitorDefinition] | None = None) -> RetrainLoop:
    """Approve the loop of ``model`` awaiting approval (of ``version``, if given): its version
    is promoted through the gated promotion (the canary's, if one ran), or, for a canary policy
    whose canary has not run yet, its canary starts. ``reason`` goes into the audit trail.

    Example::

        approve(p, "churn", 4, reason="checked the slices with the risk team").state
        # 'promoted'
    """
    _need_reason(reason, "approve")
    loop = _waiting(project, model, version, ("awaiting_approval",), "approve")
    superseded = _superseded(project, loop)
    if superseded is not None:
        raise PromotionRefused(
            f"not approving {model} v{loop.version}: {superseded.reason}; the loop is now "
            "superseded", hint=f"validate it again and promote it by hand: tarmac validate "
                               f"{model} {loop.version}")
    loop = _move(project, loop, "retrain.approved", expect="awaiting_approval",
                 details={"version": loop.version, "reason": reason})
    policy = policy_of(loop)
    try:
        if policy.promote == "canary" and loop.canary_since is None:
            return _start_canary(project, loop, policy, "awaiting_approval", now_us())
        done = _promote(project, loop, "awaiting_approval", reason=reason,
                        canary=loop.canary_since is not None)
        _alert(project, _definition(project, done.monitor, definitions), done)
        return done
    except _LoopFailed as exc:
        _alert(project, _definition(project, exc.loop.monitor, definitions), exc.loop)
        raise PromotionRefused(f"approving {model} v{loop.version} failed: {exc.loop.reason}",
                               hint="the champion is unchanged; tarmac monitor loops "
                                    f"{model}") from None


def reject(project: Project, model: str, version: int | None = None, *,
           reason: str) -> RetrainLoop:
    """Reject the open loop of ``model`` awaiting approval or in canary (of ``version``, if
    given): its canary, if deployed, is aborted; the champion stays. Audited with ``reason``.

    Example: ``reject(p, "churn", reason="trained on the outage week").state  # 'rejected'``
    """
    _need_reason(reason, "reject")
    loop = _waiting(project, model, version, ("awaiting_approval", "canary"), "reject")
    _abort_canary(project, loop)
    return _move(project, loop, "retrain.rejected", expect=loop.state,
                 details={"version": loop.version, "reason": reason}, state="rejected",
                 reason=f"rejected: {reason}")


def loops(project: Project, model: str | None = None, *, open_only: bool = False,
          limit: int = 50) -> list[RetrainLoop]:
    """Retraining loops (of ``model``, or all), newest first (``open_only``: the ones still
    going: training, awaiting approval, canary). What ``tarmac monitor loops`` lists."""
    return retrain_loops(project.catalog, model=model,
                         states=OPEN_LOOP_STATES if open_only else None, limit=limit)


def policy_of(loop: RetrainLoop) -> RetrainPolicy:
    """The ``retrain(...)`` policy a loop was started with (as recorded in the catalog)."""
    p = loop.policy
    return retrain(promote=p.get("promote", "canary"),
                   canary_percent=p.get("canary_percent", 10),
                   canary_for=p.get("canary_for", "1h"),
                   then=p.get("then", "promote_if_gates_pass"), params=p.get("params") or {},
                   cooldown=p.get("cooldown", "1d"))


# -- steps ----------------------------------------------------------------------------------------


def _promote(project: Project, loop: RetrainLoop, expect: str, *, reason: str,
             canary: bool = False) -> RetrainLoop:
    """The gated promotion of the loop's version (the canary's, with ``canary``); a refusal
    (its gates are stale, say) fails the loop, aborting its canary, champion untouched."""
    assert loop.version is not None
    try:
        if canary:
            project.serving.deploy(loop.model, promote_canary=True, reason=reason)
        else:
            project.models.promote(loop.model, loop.version, reason=reason)
    except TarmacError as exc:
        if canary:
            _abort_canary(project, loop)
        raise _LoopFailed(_fail(project, loop, expect,
                                f"promoting v{loop.version} was refused: {_text(exc)}")) from None
    promoted = _move(project, loop, "retrain.promoted", expect=expect,
                     details={"version": loop.version, "from": loop.champion,
                              "via": "canary" if canary else "promote", "reason": reason},
                     state="promoted", reason=None)
    return promoted


def _abort_canary(project: Project, loop: RetrainLoop) -> None:
    """Remove the loop's canary from its endpoint if it is still the one deployed."""
    if loop.version is None:
        return
    if dcat.get_deployment(project.catalog, loop.model).canary_version != loop.version:
        return
    try:
        project.serving.deploy(loop.model, abort=True,
                               reason=f"retraining loop {loop.id[:8]}: canary ended")
    except TarmacError as exc:  # a concurrent change: say so, the loop still ends
        _log.warning("retraining loop %s: could not abort canary v%s of %s: %s", loop.id[:8],
                     loop.version, loop.model, exc.message)


def _superseded(project: Project, loop: RetrainLoop) -> RetrainLoop | None:
    """Supersede a waiting loop whose champion moved since it started (not by this loop)."""
    now = _champion(project, loop.model)
    if now == loop.champion:
        return None
    if now is not None and now == loop.version:  # it was promoted; the last step did not land
        return _move(project, loop, "retrain.promoted", expect=loop.state,
                     details={"version": loop.version, "from": loop.champion,
                              "via": "recovered"}, state="promoted", reason=None)
    _abort_canary(project, loop)
    was = f"v{loop.champion}" if loop.champion is not None else "none"
    return _move(project, loop, "retrain.superseded", expect=loop.state,
                 details={"version": loop.version, "champion_then": loop.champion,
                          "champion_now": now}, state="superseded",
                 reason=f"the champion changed from {was} to v{now} while the loop waited")


def _reap(project: Project, loop: RetrainLoop) -> RetrainLoop | None:
    """Fail a loop left in ``training`` whose ledger run is no longer running (its process
    died: the ledger marks such runs failed when a project is opened on that host)."""
    runs = project.ledger.runs(job=f"retrain:{loop.model}", limit=50).items
    mine = [r for r in runs if r.params.get("loop") == loop.id]
    if not mine or mine[0].status == "running":
        return None
    _abort_canary(project, loop)
    try:
        return _fail(project, loop, "training", "the process running the loop ended before it "
                     f"finished (run {mine[0].id[:8]} {mine[0].status})")
    except ConflictError:
        return None


def _fail(project: Project, loop: RetrainLoop, expect: str, reason: str, *,
          action: str = "retrain.failed", details: dict[str, Any] | None = None) -> RetrainLoop:
    _log.warning("retraining loop %s of %s failed: %s", loop.id[:8], loop.model, reason)
    return _move(project, loop, action, expect=expect,
                 details={"version": loop.version, "reason": reason, **(details or {})},
                 state="failed", reason=reason[:REASON_CHARS])


def _move(project: Project, loop: RetrainLoop, action: str, *, expect: str,
          details: dict[str, Any] | None = None, **values: Any) -> RetrainLoop:
    """One audited transition: the loop row changes (only if still in ``expect``) together
    with its audit record, or neither does (``ConflictError``)."""
    body = {**_about(loop), **(details or {})}
    if "state" in values:
        body["state"] = values["state"]

    def change(conn: Connection) -> None:
        _cas(update_loop(conn, loop.id, expect=cast(LoopState, expect), **values), loop,
             expect)

    project.ledger.commit(action, f"model:{loop.model}", body, change=change)
    return _reload(project, loop)


def _cas(moved: bool, loop: RetrainLoop, expect: str) -> None:
    if not moved:
        raise ConflictError(f"retraining loop {loop.id[:8]} of '{loop.model}' is no longer "
                            f"{expect}: another process moved it on")


# -- helpers --------------------------------------------------------------------------------------


def _blocked(latest: list[RetrainLoop], open_: list[RetrainLoop], model: str,
             policy: RetrainPolicy, at: int) -> str | None:
    if open_:
        o = open_[0]
        return f"loop {o.id[:8]} of '{model}' is still {o.state.replace('_', ' ')}"
    if latest:
        ago = (at - latest[0].started_at) / 1_000_000
        if ago < policy.cooldown.total_seconds():
            return (f"the last retraining of '{model}' started {duration(max(int(ago), 0))} "
                    f"ago; the cooldown is {duration(policy.cooldown.total_seconds())}")
    return None


def _waiting(project: Project, model: str, version: int | None, states: tuple[str, ...],
             verb: str) -> RetrainLoop:
    found = retrain_loops(project.catalog, model=model, states=OPEN_LOOP_STATES, limit=1)
    loop = found[0] if found else None
    if loop is None or loop.state not in states:
        now = f" (its open loop is {loop.state.replace('_', ' ')})" if loop else ""
        what = " or ".join(s.replace("_", " ") for s in states)
        raise UsageError(f"nothing to {verb}: no retraining loop of '{model}' is {what}{now}",
                         hint=f"tarmac monitor loops {model}")
    if version is not None and loop.version != version:
        raise UsageError(f"the open retraining loop of '{model}' is of v{loop.version}, not "
                         f"v{version}",
                         hint=f"tarmac {verb} {model} {loop.version} --reason ...")
    return loop


def _need_reason(reason: str, verb: str) -> None:
    if not isinstance(reason, str) or not reason.strip():
        raise UsageError(f"{verb} needs a reason (it goes into the audit trail)",
                         hint=f'tarmac {verb} MODEL --reason "why"')


def _definition(project: Project, monitor: str,
                definitions: Iterable[MonitorDefinition] | None) -> MonitorDefinition | None:
    """The monitor's declaration (for its alert channels): from ``definitions``, else from
    ``definitions.py``; ``None`` when it cannot be found."""
    if definitions is None:
        from tarmac.features.registry import import_definitions

        try:
            module = import_definitions(project.features.definitions_path)
        except TarmacError:
            return None
        definitions = [v for v in vars(module).values() if isinstance(v, MonitorDefinition)]
    return next((d for d in definitions if d.name == monitor), None)


def _alert(project: Project, definition: MonitorDefinition | None, loop: RetrainLoop) -> None:
    """A failed loop fires the monitor's ``retrain`` alert; a promoted one resolves it (other
    states say nothing)."""
    if definition is None or not definition.alerts or loop.state not in ("failed", "promoted"):
        return
    verdict = "failed" if loop.state == "failed" else "passed"
    why = f"retraining loop {loop.id[:8]} of '{loop.model}': {loop.reason or loop.state}"
    result = CheckResult(loop.monitor, CHECK, verdict, run_id=loop.trigger_run,
                         endpoint=loop.model, reason=why[:REASON_CHARS],
                         severity="critical" if verdict == "failed" else None)
    try:
        Alerter(project, definition.alerts, cooldown=definition.cooldown).observe([result])
    except TarmacError as exc:
        _log.warning("retraining loop %s: could not alert: %s", loop.id[:8], exc.message)


def _about(loop: RetrainLoop) -> dict[str, Any]:
    """What every audit record of a loop names: the loop, its monitor, the run that triggered
    it and what that run found (``trigger``: the failing checks)."""
    return {"loop": loop.id, "monitor": loop.monitor, "trigger_run": loop.trigger_run,
            "trigger": loop.trigger}


def _reload(project: Project, loop: RetrainLoop) -> RetrainLoop:
    found = get_loop(project.catalog, loop.id)
    assert found is not None
    return found


def _champion(project: Project, model: str) -> int | None:
    alias = mcat.get_alias(project.catalog, model, CHAMPION)
    return alias.version if alias else None


def _us(now: datetime | None) -> int:
    if now is None:
        return now_us()
    if now.tzinfo is None:
        raise UsageError(f"now must be a time with a zone (UTC), got {now!r}")
    return int(now.timestamp() * 1_000_000)


def _text(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, TarmacError) else str(exc)
    return f"{type(exc).__name__}: {message}"[:REASON_CHARS]


__all__ = ["CHECK", "CanaryVerdict", "advance_loops", "approve", "loops", "policy_of", "reject",
           "start_loop", "why_not"]
