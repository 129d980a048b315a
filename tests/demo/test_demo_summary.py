"""The demo's closing summary of its serving story: figures shown, a mismatch said loudly.

The whole demo runs in tests/e2e/test_demo.py (slow); here its report is made up, so the
summary's two outcomes are checked in a second."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import tarmac.demo.story as story
from tarmac.cli import app

runner = CliRunner()


def serving(ok: bool) -> dict[str, Any]:
    return {"steps": [{"step": "served v1 (champion) over HTTP",
                       "detail": "200 requests answered 200 in 1.9 s"}],
            "log": [{"role": "champion", "version": 1, "predictions": 428, "requests": 428,
                     "customers": 400, "scored": 423, "avg_score": 0.126},
                    {"role": "shadow", "version": 2, "predictions": 250, "requests": 250,
                     "customers": 200, "scored": 250, "avg_score": 0.138}],
            "ok": ok, "percent": 10,
            "check": "451 predictions answered 200, 451 in the predictions table" if ok else
                     "451 predictions answered 200, 449 in the predictions table; 2 answered "
                     "but not in the table"}


@pytest.mark.parametrize("ok", [True, False])
def test_the_summary_shows_the_serving_story(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             ok: bool) -> None:
    def fake(root: Path, **_: Any) -> story.DemoReport:
        report = story.DemoReport(root, [{"source": "crm", "kind": "sql", "records": 1,
                                          "location": "data/crm.db"}], chain_ok=True)
        report.serving = serving(ok)
        return report

    monkeypatch.setattr(story, "run_demo", fake)
    done = runner.invoke(app, ["demo", str(tmp_path / "d")], env={"COLUMNS": "200"})
    text = " ".join(done.stdout.split())
    assert "Serving: the champion over HTTP, a 10% canary, a shadow" in text
    assert "The prediction log: tarmac sql over the predictions table" in text
    assert "served v1 (champion) over HTTP" in text and "shadow" in text
    if ok:
        assert done.exit_code == 0, done.stdout
        assert "answered == logged: reconciled: 451 predictions answered 200" in text
        assert "DO NOT RECONCILE" not in text
    else:  # never a quiet success: said in red, and the command fails
        assert done.exit_code == 1, done.stdout
        assert "answered == logged: DO NOT RECONCILE" in text
        assert "2 answered but not in the table" in text
        assert "do not reconcile with the prediction log" in text
