"""The registry: loading verified artifacts, validating, governed promotion, rollback, races."""

from __future__ import annotations

import json
import threading

import pytest

from tarmac import faults
from tarmac.errors import ArtifactError, ConflictError, PromotionRefused, UsageError
from tarmac.project import Project

from .conftest import definitions, redefine, signal_rows

WORSE = {"only": "region"}  # region carries no signal: the gates must block this


def _champion(p: Project) -> int | None:
    return p.models.aliases("risk").get("risk", {}).get("champion")


def test_get_loads_the_champion_and_checks_inputs(mproject: Project) -> None:
    p = mproject
    v1 = p.models.train("risk").version
    latest = p.models.get("risk")  # no champion yet: the latest version
    assert latest.version == v1 and latest.aliases == []
    p.models.validate("risk", v1)
    p.models.promote("risk", v1)
    p.models.train("risk", params={"C": 0.1})
    champion = p.models.get("risk")  # with a champion: the champion, not the latest
    assert champion.version == v1 and champion.aliases == ["champion"]
    frame = signal_rows(5).to_pandas()
    assert champion.predict(frame).shape == (5,)
    scores = champion.predict_scores(frame[["region", "b", "a"]])  # matched by name
    assert scores is not None and ((scores >= 0) & (scores <= 1)).all()
    with pytest.raises(UsageError, match="lacks input column.*b .*takes a, b, region"):
        champion.predict(frame.drop(columns=["b"]))
    with pytest.raises(UsageError, match="has no alias 'challenger'.*champion -> v1"):
        p.models.get("risk", alias="challenger")
    with pytest.raises(UsageError, match="has no version 9 \\(versions 1 to 2\\)"):
        p.models.get("risk", 9)
    with pytest.raises(UsageError, match="no registered model named 'rsik'.*'risk'"):
        p.models.get("rsik")


def test_a_tampered_artifact_is_refused(mproject: Project) -> None:
    p = mproject
    version = p.models.train("risk").version
    path = p.models.artifacts.path(p.models.version("risk", version).artifact)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ArtifactError, match="was altered: its SHA-256 is .* refusing to load"):
        p.models.get("risk", version)
    with pytest.raises(ArtifactError):
        p.models.validate("risk", version)
    path.unlink()
    with pytest.raises(ArtifactError, match="is missing"):
        p.models.get("risk", version)


def test_validate_without_champion_skips_regression_gates(mproject: Project) -> None:
    p = mproject
    version = p.models.train("risk").version
    report = p.models.validate("risk")
    assert report.status == "passed" and report.exit_code == 0 and report.champion is None
    by_kind = {r.kind: r for r in report.results}
    assert by_kind["no_regression"].status == "skipped"
    assert "no champion" in by_kind["no_regression"].why
    assert by_kind["metric"].status == "passed" and by_kind["metric"].value > 0.7
    stored = p.models.validations("risk", version)
    assert len(stored) == 1 and stored[0].status == "passed"
    (record,) = p.ledger.audit(action="model.validate").items
    assert record.target == f"model:risk@{version}"


def test_worse_variant_is_blocked_by_the_gates(mproject: Project) -> None:
    p = mproject
    good = p.models.train("risk").version
    p.models.validate("risk", good)
    p.models.promote("risk", good)
    worse = p.models.train("risk", params=WORSE).version
    report = p.models.validate("risk", worse)
    assert report.status == "failed" and report.exit_code == 1 and report.champion == good
    failed = {r.kind for r in report.results if r.status == "failed"}
    assert {"metric", "no_regression"} <= failed
    markdown = report.to_markdown()
    assert f"risk v{worse}" in markdown and "champion v1" in markdown
    with pytest.raises(PromotionRefused,
                       match=f"not promoting risk v{worse} to champion: its latest validation "
                             "failed"):
        p.models.promote("risk", worse)
    assert _champion(p) == good


def test_promotion_rules(mproject: Project) -> None:
    p = mproject
    v1 = p.models.train("risk").version
    v2 = p.models.train("risk", params={"C": 0.5}).version
    with pytest.raises(UsageError, match="has no version 7"):
        p.models.promote("risk", 7)
    with pytest.raises(PromotionRefused, match="never been validated"):
        p.models.promote("risk", v1)
    with pytest.raises(UsageError, match="needs a reason"):
        p.models.promote("risk", v1, force=True)
    with pytest.raises(UsageError, match="alias 'Champion!' is not valid"):
        p.models.promote("risk", v1, alias="Champion!")
    p.models.validate("risk", v1)
    p.models.validate("risk", v2)  # validated with no champion
    change = p.models.promote("risk", v1)
    assert (change.from_version, change.to_version, change.changed) == (None, v1, True)
    assert not p.models.promote("risk", v1).changed  # already champion: nothing to do
    # v2's results were measured with no champion: stale now that v1 is champion
    with pytest.raises(PromotionRefused, match="stale: it was validated against no champion, the "
                                         "champion is now v1"):
        p.models.promote("risk", v2)
    p.models.validate("risk", v2)
    assert p.models.promote("risk", v2).to_version == v2
    # the declared gates change: earlier results no longer count
    redefine(p, definitions(gates='[metric("roc_auc") >= 0.6]'))
    p.models.validate("risk", v1)
    redefine(p, definitions(gates='[metric("roc_auc") >= 0.65]'))
    with pytest.raises(PromotionRefused, match="gates declared for it changed"):
        p.models.promote("risk", v1)


def test_forced_promotion_is_audited(mproject: Project) -> None:
    p = mproject
    v1 = p.models.train("risk").version
    change = p.models.promote("risk", v1, force=True, reason="hotfix: the old model is gone")
    assert change.forced and _champion(p) == v1
    (record,) = p.ledger.audit(action="model.promote").items
    details = json.loads(record.details)
    assert details["forced"] is True
    assert details["reason"] == "hotfix: the old model is gone"
    assert "never been validated" in details["overridden"]
    (move,) = p.models.history("risk")
    assert move.forced and move.reason == "hotfix: the old model is gone"


def test_rolling_back_to_a_forced_version_needs_force_too(mproject: Project) -> None:
    p = mproject
    forced = p.models.train("risk", params=WORSE).version
    p.models.promote("risk", forced, force=True, reason="before the gates existed")
    good = p.models.train("risk").version
    p.models.validate("risk", good)
    p.models.promote("risk", good)
    with pytest.raises(PromotionRefused, match=f"back to v{forced}: its gates never passed"):
        p.models.rollback("risk")
    assert _champion(p) == good
    with pytest.raises(UsageError, match="a forced rollback needs a reason"):
        p.models.rollback("risk", force=True)
    change = p.models.rollback("risk", force=True, reason="the new one pages us")
    assert change.forced and _champion(p) == forced
    assert p.models.history("risk")[0].forced


def test_rollback_returns_to_the_previous_champion(mproject: Project) -> None:
    p = mproject
    versions = []
    for c in (1.0, 0.5, 0.2):
        v = p.models.train("risk", params={"C": c}).version
        p.models.validate("risk", v)
        p.models.promote("risk", v)
        versions.append(v)
    v1, v2, v3 = versions
    with pytest.raises(UsageError, match="has no challenger to roll back"):
        p.models.rollback("risk", alias="challenger")
    assert p.models.rollback("risk", reason="bad").to_version == v2
    assert p.models.rollback("risk").to_version == v1  # and again: the one before v2
    with pytest.raises(UsageError, match="v1 is the first champion"):
        p.models.rollback("risk")
    assert p.models.rollback("risk", to=v3).to_version == v3
    p.models.train("risk")
    with pytest.raises(UsageError, match="v4 of 'risk' has never been champion"):
        p.models.rollback("risk", to=4)
    history = p.models.history("risk", "champion")
    assert [(h.action, h.from_version, h.to_version) for h in history[:4]] == [
        ("rollback", v1, v3), ("rollback", v2, v1), ("rollback", v3, v2), ("promote", v2, v3)]
    assert history[3].reason is None and history[2].reason == "bad"
    actions = [r.action for r in p.ledger.audit(action="model.rollback").items]
    assert actions == ["model.rollback"] * 3


def test_racing_promotions_one_wins(mproject_any: Project) -> None:
    """Two promotions that both saw the same champion: exactly one lands."""
    p = mproject_any
    versions = [p.models.train("risk", params={"C": c}).version for c in (1.0, 0.5)]
    for v in versions:
        p.models.validate("risk", v)
    barrier = threading.Barrier(2, timeout=30)

    def both_checked(**_context: object) -> None:
        barrier.wait()  # both have read the alias and checked the gates before either moves it

    outcomes: dict[int, object] = {}

    def promote(v: int) -> None:
        try:
            outcomes[v] = p.models.promote("risk", v)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertions
            outcomes[v] = exc

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    with faults.inject("promote.after_checks", both_checked):
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
    errors = [o for o in outcomes.values() if isinstance(o, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], ConflictError), outcomes
    assert "moved while this change was being made" in errors[0].message
    winner = next(v for v, o in outcomes.items() if not isinstance(o, Exception))
    assert _champion(p) == winner
    assert [(h.from_version, h.to_version) for h in p.models.history("risk")] == [(None, winner)]
    assert len(p.ledger.audit(action="model.promote").items) == 1
    assert p.ledger.verify().ok


def test_unknown_metric_is_refused_where_it_is_declared(mproject: Project) -> None:
    p = mproject
    redefine(p, definitions(gates='[metric("roc_aux") >= 0.7]'))
    with pytest.raises(UsageError, match=r"definitions.py line \d+: unknown metric 'roc_aux'"):
        p.models.train("risk")


def test_unknown_slice_column_is_a_gate_error(mproject: Project) -> None:
    p = mproject
    redefine(p, definitions(gates='[slice_metric("roc_auc", by="regoin") >= 0.5]'))
    version = p.models.train("risk").version
    report = p.models.validate("risk", version)
    assert report.status == "error" and report.exit_code == 2
    (result, *_) = report.results
    assert result.status == "error" and "slice column 'regoin' is not in the holdout" in result.why
    with pytest.raises(PromotionRefused, match="latest validation could not run every gate"):
        p.models.promote("risk", version)


def test_definitions_file_missing(mproject: Project) -> None:
    (mproject.root / "definitions.py").unlink()
    with pytest.raises(UsageError, match="no definitions file"):
        mproject.models.train("risk")
