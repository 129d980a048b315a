"""Model cards as a reviewer reads them: ``p.model_card`` / ``p.models.card`` and
``tarmac models card``, in Markdown and HTML.

One project per module (the ``risk`` model of tests/models, declaring its owner, intended use
and limitations, one with a ``<script>`` in it; and ``plain``, declaring none):

- ``risk`` v1 trained, validated and promoted: champion; v2 trained, validated against it and
  deployed as a 25% canary; a monitor whose latest window failed on drift of ``a``, a
  retraining loop that produced v2 and an alert delivery, written straight into the catalog;
- ``plain`` v1 trained by an older Tarmac (its spec predates declarations), never validated,
  promoted, deployed or monitored.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from models.conftest import FEATURES, LOGISTIC, build
from tarmac.catalog import _tables as t
from tarmac.catalog import alerts as acat
from tarmac.catalog import deployments as dcat
from tarmac.catalog import monitors as moncat
from tarmac.catalog.records import now_us
from tarmac.cli import app
from tarmac.errors import UsageError
from tarmac.models import model
from tarmac.project import Project
from tarmac.trace import ModelCard

SCRIPT = "<script>alert('owned')</script>"
LIMITS = [f"Not for customers under 18 {SCRIPT}", "Trained on 2024 data only | not 2025"]
CARD = LOGISTIC.replace(
    'params={"C": 1.0, "only": None})',
    'params={"C": 1.0, "only": None},\n'
    '       owner="risk-team@kestrel.example",\n'
    '       intended_use="Rank customers for the retention team\'s outreach",\n'
    f"       limitations={LIMITS!r})")
PLAIN = '''
@model(name="plain", features="risk", label=label("labels", "churned", timestamp="observed"),
       split=time_split(test="last 20%", by="known_at"))
def plain(data: TrainingData):
    from sklearn.dummy import DummyClassifier
    return DummyClassifier(strategy="prior").fit(data.X, data.y)
'''
GATES = '[metric("roc_auc") >= 0.7, slice_metric("roc_auc", by="region") >= 0.5]'
H = 3600 * 1_000_000
WINDOW_END = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1_000_000)

runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    assert "owner=" in CARD  # the replacement above found its place
    p = build(tmp_path_factory.mktemp("card") / "proj",
              text=FEATURES + f"\nGATES = {GATES}\n" + CARD + PLAIN)
    p.models.train("risk")
    assert p.models.validate("risk", 1).status == "passed"
    p.models.promote("risk", 1)
    p.models.train("risk", params={"C": 0.5})
    assert p.models.validate("risk", 2).status == "passed"
    p.ledger.commit("model.deploy", "endpoint:risk", {"canary": 2}, change=lambda conn:
                    dcat.set_deployment(conn, expected=dcat.get_deployment(p.catalog, "risk"),
                                        action="canary", actor="ana", canary_version=2,
                                        canary_percent=25.0, shadow_version=None,
                                        reason="try the C=0.5 model"))
    _monitor(p)
    p.models.train("plain")
    with p.catalog.engine.begin() as conn:  # as an older Tarmac recorded it: no declarations
        mv = t.model_versions
        spec = json.loads(conn.execute(select(mv.c.spec).where(
            (mv.c.model == "plain") & (mv.c.version == 1))).scalar_one())
        for key in ("owner", "intended_use", "limitations"):
            del spec[key]
        conn.execute(update(mv).where((mv.c.model == "plain") & (mv.c.version == 1))
                     .values(spec=json.dumps(spec)))
    yield p
    p.close()


def _monitor(p: Project) -> None:
    """A monitor of ``risk`` whose latest window failed on drift, the retraining loop it
    started (which trained v2) and the alert it sent, as the monitor would record them."""
    with p.catalog.engine.begin() as conn:
        moncat.put_monitor(conn, "risk_watch", "risk", {}, "h1", 3600, 3600)
    for end, verdict, failing in ((WINDOW_END - H, "passed", []), (WINDOW_END, "failed", [
            {"check": "drift", "metric": "psi", "column": "a", "slice": None,
             "verdict": "drifted", "value": 0.3125, "threshold": 0.2, "effect": "large",
             "reason": "a moved by +1.2 standard deviations"}])):
        run = moncat.claim_window(p.catalog, "risk_watch", end - H, end)
        assert run is not None
        summary = {"version": 1, "predictions": 1500, "failing": failing}
        with p.catalog.engine.begin() as conn:
            moncat.finish_run(conn, run.run_id, status="succeeded", verdict=verdict,
                              checks=7, failing=len(failing), undecided=0, summary=summary)
    now = now_us()
    with p.catalog.engine.begin() as conn:
        moncat.add_loop(conn, moncat.RetrainLoop(
            str(uuid.uuid4()), "risk_watch", "risk", run.run_id, {"check": "drift"}, {},
            "canary", 1, 2, now, "drift of a", now, now))
        acat.add_deliveries(conn, [{
            "monitor": "risk_watch", "check_name": "drift", "column_name": "a",
            "state": "firing", "notice_key": "k1", "channel": "webhook:hooks.example",
            "outcome": "delivered", "attempts": 1, "status_code": 200, "error": None,
            "seconds": 0.01, "at": now}])


def section(md: str, title: str) -> str:
    """The Markdown between ``## title`` and the next ``## ``."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", md, re.M | re.S)
    assert found, f"no section {title!r} in:\n{md}"
    return found.group(1)


def test_the_champion_card_says_what_was_declared_measured_and_decided(project: Project
                                                                        ) -> None:
    card = project.model_card("risk")  # the champion by default, not the latest
    assert isinstance(card, ModelCard) and card.version == 1 and card.latest == 2
    assert card.owner == "risk-team@kestrel.example" and card.limitations == LIMITS
    md = card.to_markdown()
    assert md.startswith("# Model card: risk v1\n")
    titles = re.findall(r"^## (.+)$", md, re.M)
    assert titles == ["Summary", "Intended use", "Known limitations", "Training data",
                      "Metrics", "Gate results", "Champion history", "Deployment",
                      "Monitoring"]
    assert "- **Serves as:** champion" in section(md, "Summary")
    intended = section(md, "Intended use")
    assert "risk-team@kestrel.example" in intended and "retention team's outreach" in intended

    training = section(md, "Training data")
    run = project.models.run(card.training.run_id)
    assert f"#{run.seq} ({run.run_id[:8]}), succeeded" in training
    assert "training\\_set:risk@1: 480 rows trained on, 120 held out" in training
    assert "- **Input tables:** labels@0, signals@0" in training
    assert "labels.churned, observed at observed" in training
    assert "last 20% by known\\_at" in training and "C=1.0" in training
    lineage = training.split("### Lineage (upstream)")[1]  # the tree reaches the lake tables
    assert "\n      - labels@0\n" in lineage and "\n        - run lake.append " in lineage

    metrics = section(md, "Metrics")
    auc = card.metrics["roc_auc"]
    assert f"| roc\\_auc | {auc:.4f} |" in metrics
    assert "### Per slice of region" in metrics
    for region, row in run.slices["region"].items():
        assert f"| {region} | {row['rows']} | {row['roc_auc']:.4f} |" in metrics

    gates = section(md, "Gate results")
    assert "- **Status:** ✅ passed" in gates and "with no champion to compare with" in gates
    assert f"| roc\\_auc >= 0.7 | ✅ passed | {auc:.4f} | >= 0.7 |" in gates
    assert "in every region | ✅ passed |" in gates

    history = section(md, "Champion history")
    assert "Aliases now: champion → v1" in history
    assert "| champion | promote (none) → v1 |" in history and "| no | — |" in history


def test_deployment_and_monitoring_of_the_canary(project: Project) -> None:
    card = project.models.card("risk", 2)
    assert card.roles == ["canary (25% of traffic)"] and card.aliases == []
    md = card.to_markdown()
    assert "- **Serves as:** canary (25% of traffic)" in md
    deployment = section(md, "Deployment")
    assert "Endpoint risk: its champion, v1, answers every request the canary" in deployment
    assert "- **Canary:** v2 (25% of traffic)" in deployment
    assert "| canary | v2 | 25% | — | ana | try the C=0.5 model |" in deployment
    assert "against champion v1" in section(md, "Gate results")

    monitoring = section(md, "Monitoring")
    assert "| risk\\_watch | 2026-05-31 23:00:00 UTC – 2026-06-01 00:00:00 UTC | ❌ failed | " \
           "v1 | 1,500 | 1 of 7 |" in monitoring
    assert "| drift: psi | a | — | ❌ drifted | 0.3125 | 0.2 | a moved by +1.2 standard " \
           "deviations |" in monitoring
    assert "| risk\\_watch | ⏳ canary | v1 | v2 | drift of a |" in monitoring  # the loop
    assert "| risk\\_watch | drift | a | ❌ firing | webhook:hooks.example | ✅ delivered |" \
        in monitoring


def test_html_is_one_self_contained_page_with_every_text_escaped(project: Project) -> None:
    card = project.model_card("risk")
    page = card.to_html()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<style>" in page and "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page)  # nothing fetched
    assert "Not for customers under 18 &lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" \
        in page
    for title in ("Intended use", "Known limitations", "Training data", "Metrics",
                  "Gate results", "Champion history", "Deployment", "Monitoring"):
        assert f"<h2>{title}</h2>" in page
    assert f"<td>{card.metrics['roc_auc']:.4f}</td>" in page
    assert '<span class="badge ok">passed</span>' in page
    md = card.to_markdown()  # Markdown: no tag can open, and the pipe keeps its table cell
    assert SCRIPT not in md and "<script" not in md
    assert "&lt;script>alert('owned')&lt;/script>" in section(md, "Known limitations")
    assert "- Trained on 2024 data only \\| not 2025" in md


def test_a_version_without_validation_promotion_monitoring_or_artifact(project: Project
                                                                       ) -> None:
    record = project.models.version("plain", 1)
    project.models.artifacts.path(record.artifact).unlink()  # deleted by hand
    card = project.model_card("plain")
    assert not card.artifact_present and not card.declared
    md = card.to_markdown()
    assert "missing: sha256" in section(md, "Summary")
    assert "trained before Tarmac recorded a model's owner" in section(md, "Intended use")
    assert "trained before Tarmac recorded" in section(md, "Known limitations")
    assert "Never validated: no gate has judged v1." in section(md, "Gate results")
    assert "Never promoted: no alias of plain has ever moved." in section(md, "Champion history")
    assert "plain has no champion, so its endpoint answers nothing" in section(md, "Deployment")
    monitoring = section(md, "Monitoring")
    assert "Not monitored: no monitor watches plain." in monitoring
    assert "No retraining loop produced or challenged this version." in monitoring
    assert "No alert was sent." in monitoring
    assert "- **Serves as:** nothing" in md
    assert "480 rows trained on" in section(md, "Training data")  # still from the registry
    assert "Never validated" in card.to_html()


def test_unknown_model_and_version_are_refused_with_what_exists(project: Project) -> None:
    with pytest.raises(UsageError, match="no registered model named 'rsik'; did you mean "
                                         "'risk'"):
        project.model_card("rsik")
    with pytest.raises(UsageError, match=r"model 'risk' has no version 9 \(versions 1 to 2\)"):
        project.models.card("risk", 9)
    with pytest.raises(UsageError, match="model 'risk' has no alias 'staging'"):
        project.model_card("risk", alias="staging")


def test_declarations_are_checked_and_recorded_with_the_spec() -> None:
    def fit(data: object) -> None:
        return None

    kw = {"features": "risk", "label": __import__("tarmac.models", fromlist=["label"])
          .label("labels", "churned")}
    with pytest.raises(UsageError, match="limitations must be a list of sentences"):
        model("m", limitations="one long text", **kw)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="owner must be non-empty text"):
        model("m", owner=" ", **kw)  # type: ignore[arg-type]
    declared = model("m", owner=" ana ", limitations=["x"], **kw)(fit)  # type: ignore[arg-type]
    assert declared.spec()["owner"] == "ana" and declared.spec()["limitations"] == ["x"]
    assert declared.spec()["intended_use"] is None


def test_cli_writes_html_and_markdown_files(project: Project, tmp_path: Path) -> None:
    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["--project", str(project.root), *args])
        return result.exit_code, result.output

    page = tmp_path / "card.html"
    code, out = run("models", "card", "risk", "-o", str(page))
    assert code == 0 and "the html model card of risk v1" in out
    assert page.read_text().startswith("<!DOCTYPE html>")
    text = tmp_path / "card.md"
    code, out = run("models", "card", "risk", "--version", "2", "-o", str(text))
    assert code == 0 and text.read_text().startswith("# Model card: risk v2\n")
    code, out = run("models", "card", "risk", "--alias", "champion")
    assert code == 0 and out.startswith("# Model card: risk v1\n") and "## Monitoring" in out
    code, out = run("models", "card", "rsik")
    assert code == 2 and "did you mean 'risk'" in out
    code, out = run("models", "card", "risk", "--format", "pdf")
    assert code == 2 and "expected markdown or html" in out


def test_a_version_without_training_slices_shows_what_its_slice_gates_measured() -> None:
    """An imported version has no training run: its per-slice figures are its slice gates'."""
    from tarmac.trace.card import _slices

    report = {"results": [
        {"name": "roc_auc >= 0.5 in every region", "details": {
            "metric": "roc_auc", "by": "region",
            "slices": {"east": {"rows": 51, "value": 0.91}, "tiny": {"rows": 3, "value": None}}}},
        {"name": "no null predictions", "details": {"nulls": 0}}]}
    assert _slices(None, report) == {"region": {"east": {"rows": 51, "roc_auc": 0.91},
                                                "tiny": {"rows": 3}}}
    assert _slices(None, None) == {}


def test_a_broken_definitions_file_does_not_hide_the_card(project: Project) -> None:
    path = project.root / "definitions.py"
    text = path.read_text()
    path.write_text(text + "\nthis is not python\n")
    try:
        card = project.model_card("risk")
    finally:
        path.write_text(text)
    assert card.version == 1 and card.gates is not None and card.monitors[0].name == "risk_watch"
    assert any(n.startswith("the declared monitors could not be read") for n in card.notes)
    assert "- Note: the declared monitors could not be read" in card.to_markdown()
