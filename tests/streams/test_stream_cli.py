"""``tarmac stream``: produce from a file or stdin, a bad line refused, tail, topics --json."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.project import Project

from .conftest import click

runner = CliRunner()


def run(project: Project, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(project.root), *args], input=stdin)
    return result.exit_code, result.output


def events(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_produce_from_a_file_then_tail_and_topics(project: Project, tmp_path: Path) -> None:
    lines = [json.dumps({"user": f"u{i % 3}", "n": i, "city": "Zürich"}) for i in range(12)]
    code, out = run(project, "stream", "produce", "clicks", "--file", events(tmp_path, lines),
                    "--create", "--partitions", "3", "--key", "user")
    assert code == 0, out
    assert "produced 12 record(s) to clicks" in out
    code, out = run(project, "stream", "topics", "--json")
    assert code == 0, out
    [topic] = json.loads(out)
    assert topic["topic"] == "clicks" and topic["partitions"] == 3
    assert sum(topic["end_offsets"]) == 12 and topic["records"] == 12
    code, out = run(project, "stream", "tail", "clicks", "--from-beginning", "-n", "100",
                    "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert sorted(r["value"]["n"] for r in rows) == list(range(12))
    assert all(r["key"] == r["value"]["user"] for r in rows)
    code, out = run(project, "stream", "tail", "clicks", "-n", "2", "--json")
    assert code == 0 and len(json.loads(out)) == 2
    code, out = run(project, "stream", "tail", "clicks")
    assert code == 0 and "Zürich" in out
    assert project.streams.committed("any", "clicks") == {}  # tail commits nothing
    code, out = run(project, "stream", "topics")
    assert code == 0 and "clicks" in out and "forever" in out


def test_produce_from_stdin_to_an_existing_topic(project: Project) -> None:
    project.streams.create_topic("t")
    code, out = run(project, "stream", "produce", "t", "--json", stdin='{"a": 1}\n\n[1, 2]\n')
    assert code == 0, out
    assert json.loads(out)["records"] == 2
    assert [m.json() for m in project.streams.read("t", 0)] == [{"a": 1}, [1, 2]]


def test_a_bad_line_is_refused_by_number_and_nothing_is_produced(project: Project,
                                                                 tmp_path: Path) -> None:
    project.streams.create_topic("clicks")
    path = events(tmp_path, ['{"ok": 1}', '{"ok": 2}', '{"broken": ', '{"ok": 4}'])
    code, out = run(project, "stream", "produce", "clicks", "--file", path)
    assert code == 2
    assert "line 3 is not JSON" in out and "nothing was produced" in out
    assert project.streams.end_offsets("clicks") == [0]


def test_an_unknown_topic_is_one_line_naming_close_ones(project: Project) -> None:
    project.streams.create_topic("clicks")
    code, out = run(project, "stream", "tail", "clikcs")
    assert code == 2 and "no topic 'clikcs'" in out and "did you mean 'clicks'" in out
    code, out = run(project, "stream", "produce", "clickz", stdin='{"a": 1}\n')
    assert code == 2 and "did you mean 'clicks'" in out
    code, out = run(project, "stream", "topics", "--json")
    assert code == 0 and json.loads(out)[0]["topic"] == "clicks"


def test_a_stream_source_is_checked_line_by_line_and_nothing_is_produced(
        clicks: Project, tmp_path: Path) -> None:
    lines = [json.dumps(click(1)), "", json.dumps(click(2, user_id="two")),
             json.dumps({"event_id": "e3", "ts": "2026-05-01"})]
    code, out = run(clicks, "stream", "produce", "clicks", "--file", events(tmp_path, lines))
    assert code == 2, out
    assert "2 of 3 record(s) break the contract of stream source 'clicks'" in out
    assert "line 3, field 'user_id': 'user_id' is not a valid int" in out  # blank line counted
    assert "line 4, field 'user_id': a message without a key" in out
    assert "click-events" not in [t.name for t in clicks.streams.topics()]


def test_a_stream_source_gets_its_topic_partitions_and_key(clicks: Project,
                                                          tmp_path: Path) -> None:
    lines = [json.dumps(click(i)) for i in range(10)]
    code, out = run(clicks, "stream", "produce", "clicks", "--json",
                    "--file", events(tmp_path, lines))
    assert code == 0, out
    got = json.loads(out)
    assert (got["topic"], got["source"], got["records"], got["created"]) == (
        "click-events", "clicks", 10, True)
    assert clicks.streams.topic("click-events").partitions == 4
    keys = {m.key for p in range(4) for m in clicks.streams.read("click-events", p)}
    assert keys == {str(i % 7).encode() for i in range(10)}
    code, out = run(clicks, "stream", "produce", "click-events", "--partitions", "2",
                    "--file", events(tmp_path, lines))
    assert code == 2 and "has 4 (declared in tarmac.yaml)" in out
    code, out = run(clicks, "stream", "produce", "click-events", stdin=lines[0] + "\n")
    assert code == 0 and "checked against stream source 'clicks'" in out
