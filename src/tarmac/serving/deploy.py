"""Governed deployment changes: which versions of a model get traffic beside its champion.

An endpoint serves one model name. By default every request goes to the ``champion`` alias; a
deployment adds a **canary** (another version, given a percentage of entities, sticky by entity
key) and/or a **shadow** (a version that scores every request off the hot path; its answers are
logged, never returned). Every change goes through the ledger: the deployment row, its history
entry and the audit record commit in one transaction, compare-and-swap on the deployment's
generation (of two racing changes one lands, the other gets a ``ConflictError``).

``promote_canary`` is a promotion with the same gate check as ``tarmac promote``
(``ModelRegistry.plan_promotion``: the canary's latest validation must have passed against the
current champion with the gates declared now). The champion alias moves and the canary leaves the
deployment in ONE catalog transaction with ONE audit record (``deploy.promote_canary``, its
``promotion`` naming the alias change): a failure leaves both as they were, never a champion that
is also still the canary.

Example::

    deploy(p, "churn", canary=4, percent=10)   # 10% of customers (sticky) get v4
    deploy(p, "churn", shadow=5)               # v5 scores everything, logged only
    deploy(p, "churn", promote_canary=True)    # gated: v4 becomes champion
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tarmac.catalog import deployments as dcat
from tarmac.catalog import models as mcat
from tarmac.errors import UsageError

if TYPE_CHECKING:
    from tarmac.models.registry import AliasChange
    from tarmac.project import Project

CHAMPION = "champion"


@dataclass(frozen=True)
class DeployResult:
    """What one ``deploy`` call did: the deployment before and after, the champion after."""

    endpoint: str
    action: str
    before: dcat.Deployment
    after: dcat.Deployment
    champion: int | None
    promotion: AliasChange | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "action": self.action, "champion": self.champion,
                "before": self.before.to_dict(), "after": self.after.to_dict(),
                "promotion": self.promotion.to_dict() if self.promotion else None}


def _check_percent(percent: Any) -> float:
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise UsageError(f"percent must be a number from 0 to 100, got {percent!r}")
    value = float(percent)
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise UsageError(f"percent must be from 0 to 100, got {percent!r}",
                         hint="the share of entities (sticky by key) that get the canary")
    return value


def _check_version(project: Project, name: str, version: Any, role: str) -> int:
    if isinstance(version, bool) or not isinstance(version, int):
        raise UsageError(f"the {role} version must be a version number, got {version!r}")
    return project.models.version(name, version).version  # unknown model/version: clear error


def deploy(project: Project, name: str, *, canary: int | None = None,
           percent: float | None = None, shadow: int | None = None,
           promote_canary: bool = False, abort: bool = False, stop_shadow: bool = False,
           reason: str | None = None) -> DeployResult:
    """Change what serves ``name`` beside its champion (one governed, audited change).

    ``canary`` + ``percent``: a canary version for that share of entities (``percent`` alone
    changes the share of the current canary); ``shadow``: a version scoring every request off
    the hot path; ``promote_canary``: the canary becomes champion (gated, as ``promote``);
    ``abort``: the canary is removed; ``stop_shadow``: the shadow is removed."""
    project.ledger.guard.check("deploy", f"model:{name}")
    ending = [a for a, on in (("promote_canary", promote_canary), ("abort", abort)) if on]
    setting = [a for a, on in (("canary", canary is not None), ("percent", percent is not None),
                               ("shadow", shadow is not None), ("stop_shadow", stop_shadow))
               if on]
    if len(ending) > 1 or ending and setting:
        raise UsageError(f"{' and '.join(ending + setting)} cannot be combined: "
                         f"{ending[0]} is a change of its own")
    if not ending and not setting:
        raise UsageError("nothing to change: give a canary and percent, a shadow, "
                         "promote_canary, abort or stop_shadow")
    if shadow is not None and stop_shadow:
        raise UsageError("shadow and stop_shadow cannot be combined")
    project.models.version(name)  # an unknown model: the error names the closest ones
    catalog = project.catalog
    before = dcat.get_deployment(catalog, name)
    champion_alias = mcat.get_alias(catalog, name, CHAMPION)
    champion = champion_alias.version if champion_alias else None
    new_canary, new_percent, new_shadow = (before.canary_version, before.canary_percent,
                                           before.shadow_version)
    promotion: AliasChange | None = None
    move_alias: Callable[[Any], None] | None = None
    promotion_details: dict[str, Any] | None = None
    if promote_canary:
        if before.canary_version is None:
            raise UsageError(f"'{name}' has no canary to promote",
                             hint=f"tarmac deploy {name} --canary VERSION --percent P")
        plan = project.models.plan_promotion(name, before.canary_version, reason=reason)
        promotion, move_alias = plan.result, plan.write
        promotion_details = plan.details
        champion = before.canary_version
        new_canary = new_percent = None
        action = "promote_canary"
    elif abort:
        if before.canary_version is None:
            raise UsageError(f"'{name}' has no canary to abort")
        new_canary = new_percent = None
        action = "abort"
    else:
        if canary is not None:
            new_canary = _check_version(project, name, canary, "canary")
            if champion is None:
                raise UsageError(f"'{name}' has no champion: a canary takes traffic from it",
                                 hint=f"promote a version first: tarmac promote {name} VERSION")
            if new_canary == champion:
                raise UsageError(f"v{new_canary} is already the champion of '{name}': a canary "
                                 "must be another version")
            if percent is None and before.canary_version is None:
                raise UsageError("a new canary needs a percent (0 to 100) of entities",
                                 hint=f"tarmac deploy {name} --canary {canary} --percent 10")
        if percent is not None:
            new_percent = _check_percent(percent)
            if new_canary is None:
                raise UsageError(f"'{name}' has no canary to give {percent}% to",
                                 hint=f"tarmac deploy {name} --canary VERSION --percent "
                                      f"{percent}")
        if shadow is not None:
            new_shadow = _check_version(project, name, shadow, "shadow")
            if new_shadow == champion:
                raise UsageError(f"v{new_shadow} is the champion of '{name}': a shadow must be "
                                 "another version")
        if stop_shadow:
            if before.shadow_version is None:
                raise UsageError(f"'{name}' has no shadow to stop")
            new_shadow = None
        if new_shadow is not None and new_shadow == new_canary:
            raise UsageError(f"v{new_shadow} would be both canary and shadow of '{name}'")
        action = "+".join(a for a in setting if a != "percent" or canary is None)
    actor = project.ledger.actor
    holder: list[dcat.Deployment] = []

    def change(conn: Any) -> None:
        if move_alias is not None:  # the promotion, in the deployment's transaction
            move_alias(conn)
        holder.append(dcat.set_deployment(
            conn, expected=before, action=action, actor=actor, canary_version=new_canary,
            canary_percent=new_percent, shadow_version=new_shadow, reason=reason))

    details: dict[str, Any] = {
        "action": action, "champion": champion,
        "from": {"canary": before.canary_version, "percent": before.canary_percent,
                 "shadow": before.shadow_version},
        "to": {"canary": new_canary, "percent": new_percent, "shadow": new_shadow}}
    if promotion_details is not None:
        details["promotion"] = promotion_details
    if reason:
        details["reason"] = reason
    project.ledger.commit(f"deploy.{action.split('+')[0]}", f"endpoint:{name}", details,
                          change=change)
    return DeployResult(name, action, before, holder[0], champion, promotion)


__all__ = ["DeployResult", "deploy"]
