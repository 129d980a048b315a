"""A ``ModelCard`` laid out as sections of plain blocks: text, facts, tables, lists, a tree.

Every block holds plain strings, never markup: the renderers (``_card_render``) escape each
string as they write it, so a declared limitation or a promotion reason can never inject
markup or script into the Markdown or the HTML form. The layout decides what each section
says, including what it says when there is nothing to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tarmac.catalog.records import to_datetime
from tarmac.gates.report import fmt
from tarmac.monitoring.alerts import FIRING_VERDICTS, PASSING_VERDICTS

if TYPE_CHECKING:
    from tarmac.trace.card import ModelCard

KEY_METRICS = ("roc_auc", "pr_auc", "accuracy", "f1", "precision", "recall", "log_loss",
               "rmse", "mae", "r2")
SLICE_METRICS = 5  # metric columns of a per-slice table, at most
FAILING_ROWS = 20  # failing checks listed per monitor, at most


@dataclass(frozen=True)
class Badge:
    """A status word drawn as a coloured badge (tone: ok, bad, warn, info, muted)."""

    text: str
    tone: str


Cell = str | Badge


@dataclass(frozen=True)
class Text:
    text: str
    muted: bool = False


@dataclass(frozen=True)
class Facts:
    rows: Sequence[tuple[str, Cell]]


@dataclass(frozen=True)
class Grid:
    headers: Sequence[str]
    rows: Sequence[Sequence[Cell]]


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Tree:
    items: Sequence[tuple[int, str]]  # (depth, text)


@dataclass(frozen=True)
class Sub:
    title: str


Block = Text | Facts | Grid | Bullets | Tree | Sub
TONES = {"passed": "ok", "succeeded": "ok", "delivered": "ok", "promoted": "ok",
         "failed": "bad", "error": "bad", "rejected": "bad", "firing": "bad",
         "skipped": "muted", "no data": "muted", "superseded": "muted", "resolved": "ok",
         "running": "warn", "training": "warn", "canary": "warn", "awaiting_approval": "warn"}
ICONS = {"ok": "✅", "bad": "❌", "warn": "⏳", "muted": "⏭️", "info": "ℹ️"}


def badge(status: str | None) -> Badge:
    text = status or "unknown"
    if text in FIRING_VERDICTS:
        return Badge(text, "bad")
    return Badge(text, "ok" if text in PASSING_VERDICTS else TONES.get(text, "info"))


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "—"


def sections(card: ModelCard) -> list[tuple[str, list[Block]]]:
    """The card laid out: (section title, blocks), in reading order."""
    return [("Summary", _summary(card)), ("Intended use", _intended(card)),
            ("Known limitations", _limitations(card)), ("Training data", _training(card)),
            ("Metrics", _metrics(card)), ("Gate results", _gates(card)),
            ("Champion history", _history(card)), ("Deployment", _deployment(card)),
            ("Monitoring", _monitoring(card))]


def title(card: ModelCard) -> str:
    return f"Model card: {card.model} v{card.version}"


# -- the sections ------------------------------------------------------------------------------


def _summary(card: ModelCard) -> list[Block]:
    rows: list[tuple[str, Cell]] = [
        ("Project", card.project),
        ("Version", f"v{card.version} of {card.model} (latest: v{card.latest})"),
        ("Kind", f"{card.flavor} model, {card.task} task"),
        ("Trained", f"{when(card.created_at)} by {card.actor}"),
        ("Aliases", ", ".join(card.aliases) or "none"),
        ("Serves as", ", ".join(card.roles) or "nothing: this version serves no traffic")]
    if card.description:
        rows.append(("Description", card.description))
    if card.tags:
        rows.append(("Tags", ", ".join(f"{k}={v}" for k, v in sorted(card.tags.items()))))
    rows.append(("Artifact", f"sha256 {card.artifact[:16]}…" if card.artifact_present else
                 Badge(f"missing: sha256 {card.artifact[:16]}… is not in the artifact store; "
                       "this card is rendered from the registry, the version cannot be "
                       "loaded or served until the file is restored", "bad")))
    blocks: list[Block] = [Facts(rows)]
    if card.notes:
        blocks.append(Bullets([f"Note: {n}" for n in card.notes]))
    return blocks


_NOT_RECORDED = ("Not declared: this version was trained before Tarmac recorded a model's "
                 "owner, intended use and limitations with it.")


def _intended(card: ModelCard) -> list[Block]:
    hint = Text("Declare them on the model, @model(owner=..., intended_use=..., "
                "limitations=[...]), and train a new version.", muted=True)
    if not card.declared:
        return [Text(_NOT_RECORDED), hint]
    blocks: list[Block] = [Facts([("Owner", card.owner or "not declared"),
                                  ("Intended use", card.intended_use or "not declared")])]
    if card.owner is None or card.intended_use is None:
        blocks.append(hint)
    return blocks


def _limitations(card: ModelCard) -> list[Block]:
    if not card.declared:
        return [Text(_NOT_RECORDED)]
    if card.limitations is None:
        return [Text("Not declared."), Text("Declare them on the model: @model(limitations="
                                            "[\"...\", ...]).", muted=True)]
    if not card.limitations:
        return [Text("None: the declaration lists no known limitations (limitations=[]).")]
    return [Bullets(card.limitations)]


def _training(card: ModelCard) -> list[Block]:
    t = card.training
    rows: list[tuple[str, Cell]] = []
    if t.imported is not None:
        source = ", ".join(f"{k}: {v}" for k, v in sorted(t.imported.items()))
        rows.append(("Imported", f"{source} (run {t.run_id[:8]}); trained outside Tarmac"))
    elif t.run is not None:
        r = t.run
        rows.append(("Training run", f"#{r.seq} ({r.run_id[:8]}), {r.status}, started "
                     f"{when(r.started_at_dt)} by {r.actor}"
                     + (f", reproducing run {r.reproduces[:8]}" if r.reproduces else "")))
    else:
        rows.append(("Training run", f"{t.run_id[:8]} (not in the catalog)"))
    if t.training_set:
        counts = (f": {t.rows_train:,} rows trained on, {t.rows_test:,} held out"
                  if t.rows_train is not None and t.rows_test is not None else "")
        rows.append(("Training set", t.training_set + counts))
    rows.append(("Input tables", ", ".join(f"{k}@{v}" for k, v in sorted(t.inputs.items()))
                 or "not recorded"))
    if t.features is not None:
        features = t.features if isinstance(t.features, str) else ", ".join(map(str, t.features))
        keys = f" (keys: {', '.join(t.keys)})" if t.keys else ""
        rows.append(("Features", features + keys))
    if t.label:
        lab = t.label
        text = f"{lab.get('table')}.{lab.get('column')}"
        if lab.get("timestamp"):
            text += f", observed at {lab['timestamp']}"
        if lab.get("where"):
            text += f", where {lab['where']}"
        rows.append(("Label", text))
    if t.split:
        rows.append(("Split", f"holdout: {t.split.get('test')} by "
                     f"{t.split_by or t.split.get('by') or 'the label time'} (by time)"))
    if t.run is not None:
        rows.append(("Parameters", ", ".join(f"{k}={v}" for k, v in t.run.params.items())
                     or "none"))
        git = t.git
        rows.append(("Code", (f"git {git['commit'][:12]}"
                              + (f" on {git['branch']}" if git.get("branch") else "")
                              + (" (uncommitted changes)" if git.get("dirty") else ""))
                     if git.get("commit") else "not in a git repository"))
    blocks: list[Block] = [Facts(rows), Sub("Lineage (upstream)")]
    if not t.lineage:
        blocks.append(Text("No lineage recorded for this version."))
        return blocks
    items = []
    for s in t.lineage:
        if s.kind == "run":
            seen = " (shown above)" if s.repeated else ""
            items.append((s.depth, f"run {s.name} {(s.run_id or '')[:8]}, {s.status}, "
                                   f"{when(s.started_at)} by {s.actor}{seen}"))
        else:
            at = f"@{s.version}" if s.version is not None else ""
            items.append((s.depth, f"{s.name}{at}"))
    blocks.append(Tree(items))
    return blocks


def _metrics(card: ModelCard) -> list[Block]:
    if not card.metrics:
        return [Text("No metrics recorded for this version.")]
    held = (f" ({card.training.rows_test:,} rows)" if card.training.rows_test is not None
            else "")
    names = _ordered(card.metrics)
    blocks: list[Block] = [Text(f"Measured on the holdout set{held} when it was trained."),
                           Grid(["Metric", "Value"], [[m, fmt(card.metrics[m])] for m in names])]
    if not card.slices:
        blocks.append(Text("No per-slice metrics: declare slices=[...] or a slice gate on the "
                           "model.", muted=True))
    for column, per in card.slices.items():
        present = {m for row in per.values() for m in row if m != "rows"}
        cols = _ordered({m: 0.0 for m in present})[:SLICE_METRICS]
        blocks.append(Sub(f"Per slice of {column}"))
        blocks.append(Grid([column, "Rows", *cols], [
            [s, fmt(row.get("rows")), *(fmt(row.get(m)) for m in cols)]
            for s, row in per.items()]))
    return blocks


def _gates(card: ModelCard) -> list[Block]:
    g = card.gates
    if g is None:
        return [Text(f"Never validated: no gate has judged v{card.version}."),
                Text(f"tarmac validate {card.model} {card.version}", muted=True)]
    against = (f"against champion v{g.champion}" if g.champion is not None
               else "with no champion to compare with")
    more = f" (validated {g.validations} times; the latest shown)" if g.validations > 1 else ""
    return [Facts([("Status", badge(g.status)),
                   ("Validated", f"{when(g.at)} by {g.actor}, {against}{more}")]),
            Grid(["Gate", "Result", "Value", "Threshold", "Why"],
                 [[r.name, badge(r.status), fmt(r.value), r.threshold or "—", r.why]
                  for r in g.gates])]


def _history(card: ModelCard) -> list[Block]:
    if not card.history:
        return [Text(f"Never promoted: no alias of {card.model} has ever moved.")]
    now = ", ".join(f"{a} → v{v}" for a, v in sorted(card.model_aliases.items())) or "none"
    rows: list[list[Cell]] = []
    for h in card.history:
        before = f"v{h.from_version}" if h.from_version is not None else "(none)"
        after = f"v{h.to_version}" if h.to_version is not None else "(none)"
        rows.append([when(_at(h.at)), h.alias, f"{h.action} {before} → {after}", h.actor,
                     Badge("forced", "bad") if h.forced else "no", h.reason or "—"])
    return [Text(f"Aliases now: {now}. Moves newest first."),
            Grid(["When", "Alias", "Move", "By", "Forced", "Reason"], rows)]


def _deployment(card: ModelCard) -> list[Block]:
    champion = card.model_aliases.get("champion")
    d = card.deployment
    if d is None:
        serves = (f"the endpoint {card.model} answers with its champion, v{champion}"
                  if champion is not None else f"{card.model} has no champion, so its "
                                               "endpoint answers nothing")
        return [Text(f"Never deployed with a canary or a shadow: {serves}.")]
    serves = (f"its champion, v{champion}, answers every request"
              + (" the canary does not take" if d.canary_version is not None else "")
              if champion is not None else "no champion alias, so only a canary answers")
    if d.shadow_version is not None:
        serves += "; the shadow is scored beside it and never answers"
    canary = (f"v{d.canary_version} ({fmt(d.canary_percent)}% of traffic)"
              if d.canary_version is not None else "none")
    blocks: list[Block] = [
        Text(f"Endpoint {d.endpoint}: {serves}."),
        Facts([("Canary", canary),
               ("Shadow", f"v{d.shadow_version}" if d.shadow_version is not None else "none"),
               ("Changed", f"{when(_at(d.updated_at))} by {d.actor}")])]
    if card.deployment_changes:
        blocks += [Sub("Deployment changes (newest first)"),
                   Grid(["When", "Action", "Canary", "Share", "Shadow", "By", "Reason"], [
                       [when(_at(c.at)), c.action, _v(c.canary_version),
                        f"{fmt(c.canary_percent)}%" if c.canary_percent is not None else "—",
                        _v(c.shadow_version), c.actor, c.reason or "—"]
                       for c in card.deployment_changes])]
    return blocks


def _monitoring(card: ModelCard) -> list[Block]:
    if not card.monitors:
        blocks: list[Block] = [Text(f"Not monitored: no monitor watches {card.model}."),
                               Text("Declare one with monitor(...) in definitions.py.",
                                    muted=True)]
    else:
        rows: list[list[Cell]] = []
        for m in card.monitors:
            if not m.evaluated:
                rows.append([m.name, "no window evaluated yet", badge("no data"), "—", "—", "—"])
                continue
            verdict = badge(m.verdict if m.status == "succeeded" else m.status)
            failing = f"{len(m.failing)} of {m.checks}" if m.checks is not None else "—"
            rows.append([m.name, f"{when(m.window_start)} – {when(m.window_end)}", verdict,
                         _v(m.version), fmt(m.predictions), failing])
        blocks = [Grid(["Monitor", "Latest window", "Verdict", "Version judged", "Predictions",
                        "Failing checks"], rows)]
        for m in card.monitors:
            if m.error:
                blocks += [Sub(f"{m.name}: the latest evaluation failed"), Text(m.error)]
            if m.failing:
                blocks += [Sub(f"Failing checks of {m.name} ({when(m.window_end)})"),
                           Grid(["Check", "Column", "Slice", "Verdict", "Value", "Threshold",
                                 "Reason"],
                                [[_check(f), f.get("column") or "—", f.get("slice") or "—",
                                  badge(f.get("verdict")), fmt(f.get("value")),
                                  fmt(f.get("threshold")), f.get("reason") or "—"]
                                 for f in m.failing[:FAILING_ROWS]])]
                if len(m.failing) > FAILING_ROWS:
                    blocks.append(Text(f"and {len(m.failing) - FAILING_ROWS} more: tarmac "
                                       f"monitor show {m.name}", muted=True))
    blocks.append(Sub("Retraining loops"))
    if card.loops:
        blocks.append(Grid(["Started", "Monitor", "State", "Champion", "New version", "Reason"],
                           [[when(_at(lp.started_at)), lp.monitor, badge(lp.state),
                             _v(lp.champion), _v(lp.version), lp.reason or "—"]
                            for lp in card.loops]))
    else:
        blocks.append(Text("No retraining loop produced or challenged this version."))
    blocks.append(Sub("Latest alerts"))
    if card.alerts:
        blocks.append(Grid(["When", "Monitor", "Check", "Column", "State", "Channel",
                            "Delivery"],
                           [[when(_at(a.at)), a.monitor, a.check, a.column or "—",
                             badge(a.state), a.channel, badge(a.outcome)] for a in card.alerts]))
    else:
        blocks.append(Text("No alert was sent."))
    return blocks


def _check(found: dict[str, Any]) -> str:
    check, metric = found.get("check") or "?", found.get("metric")
    return f"{check}: {metric}" if metric and metric != check else str(check)


def _ordered(metrics: dict[str, Any]) -> list[str]:
    return ([m for m in KEY_METRICS if m in metrics]
            + sorted(m for m in metrics if m not in KEY_METRICS))


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "—"


def _at(us: int | None) -> datetime | None:
    return to_datetime(us)
