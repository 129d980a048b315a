"""Resolution: what a request for features (a service name, or ``view:feature`` / ``view``
refs) means in terms of stored views, their columns and on-demand views.

``resolve`` is pure: it reads only the ``Definitions`` it is given, so the training-set path,
the online read path, the model trainer and the HTTP layer all see the same answer for the
same request. An on-demand view's inputs that the caller did not ask for are fetched as hidden
columns (``__view__feature``) and dropped from what the caller sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tarmac.errors import UsageError, echo
from tarmac.features import registry
from tarmac.features.definitions import (
    FeatureSelection,
    FeatureView,
    OnDemandFeatureView,
    suggest,
)


@dataclass(frozen=True)
class ViewPart:
    """The features one stored view contributes: (feature, output name, feature type)."""

    view: FeatureView
    features: list[tuple[str, str, str]]
    hidden: frozenset[str] = frozenset()  # outputs only an on-demand view needs

    @property
    def ttl_us(self) -> int | None:
        s = self.view.ttl_seconds
        return None if s is None else int(s * 1_000_000)


@dataclass(frozen=True)
class DemandPart:
    """An on-demand view: its input outputs, request columns and the outputs it makes."""

    view: OnDemandFeatureView
    inputs: dict[str, str]  # feature name the function sees -> output column holding it
    features: list[tuple[str, str, str]]  # (feature, output name, feature type)


@dataclass(frozen=True)
class Resolved:
    """A service or list of refs resolved against the registry."""

    name: str
    parts: list[ViewPart]
    demand: list[DemandPart]

    @property
    def outputs(self) -> list[str]:
        """The feature columns the caller sees, in order."""
        out = [o for p in self.parts for _, o, _ in p.features if o not in p.hidden]
        return out + [o for d in self.demand for _, o, _ in d.features]

    @property
    def refs(self) -> dict[str, str]:
        """``view:feature`` -> type, for what the caller sees (recorded as consumed)."""
        refs = {f"{p.view.name}:{f}": t for p in self.parts for f, o, t in p.features
                if o not in p.hidden}
        refs.update({f"{d.view.name}:{f}": t for d in self.demand for f, _, t in d.features})
        return refs

    @property
    def request_fields(self) -> list[str]:
        return [f.name for d in self.demand for f in d.view.request]

    @property
    def join_keys(self) -> list[str]:
        keys: list[str] = []
        for p in self.parts:
            keys.extend(k for k in p.view.join_keys if k not in keys)
        return keys


def resolve(defs: registry.Definitions, features: str | Sequence[str]) -> Resolved:
    """A service name, or refs (``view:feature`` or ``view`` for all of its features),
    resolved against ``defs``: the stored views with the columns each contributes, and the
    on-demand views with the columns their functions read. Unknown names raise ``UsageError``
    with a "did you mean"."""
    if isinstance(features, str):
        service = defs.services.get(features)
        if service is None:
            if ":" in features or defs.view(features) is not None:
                return resolve(defs, [features])
            raise UsageError(f"no feature service named '{echo(features)}'"
                             + suggest(features, [*defs.services, *defs.views]))
        selections, name = service.selections(), service.name
    else:
        # A ref named twice (or 'view' next to 'view:feature') is asked once: the same
        # feature is one output column, stored or on-demand alike.
        refs = list(dict.fromkeys(features))
        chosen: dict[str, dict[str, None]] = {}  # view -> its features, in order
        for ref in refs:
            view_name, _, feat = ref.partition(":")
            view = defs.view(view_name)
            if view is None:
                raise UsageError(f"no feature view named '{echo(view_name)}' (in "
                                 f"'{echo(ref)}')"
                                 + suggest(view_name, [*defs.views, *defs.on_demand]))
            names = (feat,) if feat else tuple(f.name for f in view.features)
            for n in names:
                view.feature(n)
            chosen.setdefault(view_name, {}).update(dict.fromkeys(names))
        selections = [FeatureSelection(defs.view(v), tuple(ns))  # type: ignore[arg-type]
                      for v, ns in chosen.items()]
        name = ",".join(refs)
    registry.output_names(selections, f"features '{echo(name)}'")  # refuses colliding names
    by_view: dict[str, list[tuple[str, str, str]]] = {}
    demand: list[DemandPart] = []
    for sel in selections:
        if isinstance(sel.view, OnDemandFeatureView):
            feats = [(n, sel.output(n), sel.view.feature(n).dtype) for n in sel.names]
            demand.append(DemandPart(sel.view, {}, feats))
            continue
        view = defs.views[sel.view.name]
        by_view.setdefault(view.name, []).extend(
            (n, sel.output(n), view.feature(n).dtype) for n in sel.names)
    hidden: dict[str, set[str]] = {}
    for i, part in enumerate(demand):
        inputs: dict[str, str] = {}
        for ref in part.view.input_refs:
            view_name, feat = ref.split(":")
            taken = [o for f, o, _ in by_view.get(view_name, []) if f == feat]
            if taken:
                inputs[feat] = taken[0]
                continue
            hidden_name = f"__{view_name}__{feat}"
            view = defs.views.get(view_name)
            if view is None:
                raise UsageError(f"on-demand view '{part.view.name}' reads '{ref}', which "
                                 "is not registered", hint="run `tarmac apply`")
            by_view.setdefault(view_name, []).append(
                (feat, hidden_name, view.feature(feat).dtype))
            hidden.setdefault(view_name, set()).add(hidden_name)
            inputs[feat] = hidden_name
        demand[i] = DemandPart(part.view, inputs, part.features)
    parts = [ViewPart(defs.views[v], feats, frozenset(hidden.get(v, ())))
             for v, feats in by_view.items()]
    return Resolved(name, parts, demand)
