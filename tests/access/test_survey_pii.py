"""The survey's sampled values of personal columns, where access is enforced: an analyst
(no ``read:pii``) sees ``[redacted]`` in the terminal, the JSON and the HTML report; an admin
sees the values."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

import tarmac
from conftest import make_project
from tarmac.cli import app

EMAIL = "ada@example.com"


def _realm(root: Path) -> dict[str, str]:
    """A project with auth required, a CSV source holding e-mail addresses (detected by the
    survey) and phone numbers (tagged personal on the source), an admin and an analyst."""
    make_project(root).close()
    config = yaml.safe_load((root / "tarmac.yaml").read_text())
    config["auth"] = "required"
    config["sources"] = {"people": {"type": "file", "path": "data/people.csv",
                                    "columns": {"tel": {"tags": ["pii", "phone"]}}}}
    (root / "tarmac.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "data").mkdir()
    (root / "data" / "people.csv").write_text(
        f"id,contact,tel,city\n1,{EMAIL},+44 20 7946 0018,Leeds\n"
        "2,grace@example.org,+44 20 7946 0019,York\n")
    boot = tarmac.open(root)
    boot.identity.add_user("root", "admin")
    boot.identity.add_user("ana", "analyst")
    # root last: once an admin holds a token, the bootstrap is over
    tokens = {u: boot.identity.create_token(u).text for u in ("ana", "root")}
    boot.close()
    return tokens


def _survey(root: Path, token: str, out: Path) -> tuple[str, str, str]:
    result = CliRunner().invoke(app, ["-p", str(root), "survey", "--json", str(out / "s.json"),
                                      "--html", str(out / "s.html")],
                                env={"TARMAC_TOKEN": token})
    assert result.exit_code == 0, result.output
    return (result.output, (out / "s.json").read_text(), (out / "s.html").read_text())


def test_an_analyst_sees_no_personal_sampled_values_an_admin_does(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    tokens = _realm(root)
    (tmp_path / "ana").mkdir()
    (tmp_path / "root").mkdir()
    analyst = _survey(root, tokens["ana"], tmp_path / "ana")
    for text in analyst:
        assert EMAIL not in text and "7946" not in text
    columns = {c["name"]: c["examples"] for c in
               json.loads(analyst[1])["sources"][0]["streams"][0]["columns"]}
    assert columns["contact"] == ["[redacted]"] * 2 and columns["tel"] == ["[redacted]"] * 2
    assert columns["city"] == ["Leeds", "York"]  # not personal: shown
    assert "redacted" in analyst[2] and "read:pii" in analyst[2]
    admin = _survey(root, tokens["root"], tmp_path / "root")
    columns = {c["name"]: c["examples"] for c in
               json.loads(admin[1])["sources"][0]["streams"][0]["columns"]}
    assert columns["contact"][0] == EMAIL and columns["tel"][0] == "+44 20 7946 0018"
    assert EMAIL in admin[2]

