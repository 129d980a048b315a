"""``tarmac survey`` on real sources: SQLite through the SQL connector, CSV files through the
file connector, a missing database, a missing table and a declared stream. Asserts the figures
(rows, planted duplicate keys, null rates, personal data by name and by values, freshness), the
gaps, JSON round-trip, the HTML file (escaped) and the CLI, plus the detectors on Arrow arrays.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from rich.console import Console
from typer.testing import CliRunner

import tarmac
from tarmac.cli import app
from tarmac.errors import UsageError
from tarmac.ingest.base import Sample, Stream
from tarmac.ingest.report import to_html
from tarmac.ingest.spec import parse_sources
from tarmac.ingest.survey import (
    STREAM_NOTE,
    SurveyReport,
    detect_pii,
    format_age,
    freshness,
    key_profile,
    kinds_by_name,
    looks_like,
    luhn_valid,
    parse_duration,
    parse_times,
    render,
    survey,
    value_shares,
)
from tarmac.project import Project, scaffold

from .conftest import Declare

NOW = datetime(2024, 4, 1, 12, 0, tzinfo=UTC)
NEWEST = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)  # a month before NOW: stale
FIRST = ["Ann", "Bob", "Chloe", "Dmitri", "Eve", "Farid", "Grace", "Hugo", "Ines", "Jon"]
LAST = ["Lee", "Novak", "Okafor", "Silva", "Tanaka"]
CARDS = ["4111 1111 1111 1111", "5500-0000-0000-0004", "4012888888881881", "378282246310005"]
IPS = ["192.168.1.20", "10.0.0.7", "2001:db8::1", "fe80::1ff:fe23:4567:890a"]
N_CUSTOMERS = 20
DUP_IDS = {3: 2, 7: 3}  # customer_id -> times it occurs: 2 duplicated values, 3 extra rows
NULL_EMAILS = 5
runner = CliRunner()


def _customers() -> list[tuple[object, ...]]:
    ids = [i for i in range(1, N_CUSTOMERS + 1) for _ in range(DUP_IDS.get(i, 1))]
    rows: list[tuple[object, ...]] = []
    for n, cid in enumerate(ids):
        first, last = FIRST[n % len(FIRST)], LAST[n % len(LAST)]
        email = None if n < NULL_EMAILS else f"{first.lower()}.{last.lower()}{n}@example.com"
        updated = NEWEST - timedelta(hours=len(ids) - 1 - n)  # the last row is the newest
        rows.append((cid, f"{first} {last}", email, f"+1-555-{100 + n:03d}-{1000 + n:04d}",
                     f"{first.lower()}{n}@mail.example.org", CARDS[n % len(CARDS)],
                     IPS[n % len(IPS)], "Gold" if n % 2 else "Basic",
                     updated.strftime("%Y-%m-%dT%H:%M:%SZ")))
    return rows


def _write_sources(root: Path) -> None:
    data = root / "data"
    (data / "products").mkdir(parents=True)
    with sqlite3.connect(data / "crm.db") as db:
        db.execute("CREATE TABLE customers (customer_id INTEGER, full_name TEXT, email TEXT, "
                   "phone TEXT, login TEXT, payment TEXT, last_ip TEXT, plan TEXT, "
                   "updated_at TEXT)")
        db.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?,?,?,?)", _customers())
        db.execute("CREATE TABLE notes (tag TEXT, body TEXT)")
        db.executemany("INSERT INTO notes VALUES (?,?)",
                       [("1", "x"), ('<script>alert("x")</script>', "y")])
    db.close()
    (data / "products" / "products_2024.csv").write_text(
        "sku,name,price\nKM-1,Nimbus X1,699.00\nKM-2,Orca 5G,\nKM-3,Clear Case,19.99\n")
    (data / "products" / "products_2025.csv").write_text(
        "sku,name,price\nKM-4,Pebble Flip,\nKM-5,Orca Mini,399.00\n")


SOURCES: dict[str, dict[str, Any]] = {
    "crm": {"type": "sql", "url": "sqlite:///data/crm.db", "tables": ["customers"],
            "primary_key": "customer_id", "cursor": "updated_at",
            "columns": {"phone": {"tags": ["pii"]}}},
    "products": {"type": "file", "path": "data/products/*.csv"},
    "notes": {"type": "sql", "url": "sqlite:///data/crm.db", "tables": ["notes"],
              "primary_key": "tag", "cursor": "tag"},
    "lost": {"type": "sql", "url": "sqlite:///data/missing.db", "tables": ["customers"]},
    "typo": {"type": "sql", "url": "sqlite:///data/crm.db", "tables": ["custmers"]},
    "clicks": {"type": "stream", "topic": "clicks"},
}


@pytest.fixture
def proj(tmp_path: Path, declare: Declare) -> Project:
    """A fresh project (as tests/conftest.py makes them) declaring ``SOURCES``."""
    root = scaffold(tmp_path / "proj", name="test")
    _write_sources(root)
    return declare(tarmac.open(root), SOURCES)


@pytest.fixture
def report(proj: Project) -> SurveyReport:
    return survey(proj, now=NOW)


# -- the report's figures ---------------------------------------------------------------------


def test_sql_source_figures(report: SurveyReport) -> None:
    crm = report.source("crm")
    assert crm.status == "reachable" and crm.reachable and crm.error is None
    assert crm.location == "sqlite:///data/crm.db"
    st = crm.stream("customers")
    total = N_CUSTOMERS + sum(n - 1 for n in DUP_IDS.values())
    assert (st.rows, st.rows_estimated, st.sampled_rows, st.complete) == (total, False, total,
                                                                          True)
    assert st.key is not None
    assert (st.key.distinct, st.key.duplicate_values, st.key.duplicate_rows,
            st.key.null_rows, st.key.estimated) == (N_CUSTOMERS, 2, 3, 0, False)
    email = st.column("email")
    assert email.nulls == NULL_EMAILS and email.null_rate == round(NULL_EMAILS / total, 6)
    assert email.distinct == total - NULL_EMAILS and not email.estimated
    assert st.column("plan").distinct == 2 and st.column("customer_id").type == "int64"
    f = st.freshness
    assert f is not None and f.column == "updated_at" and f.newest == NEWEST
    assert f.exact and f.temporal and f.stale
    assert f.age == NOW - NEWEST


def test_personal_data_by_name_and_by_values(report: SurveyReport) -> None:
    pii = {(p.column, p.kind): p for p in report.source("crm").stream("customers").pii}
    assert set(pii) == {("full_name", "name"), ("email", "email"), ("phone", "phone"),
                        ("login", "email"), ("payment", "card"), ("last_ip", "ip")}
    assert pii[("full_name", "name")].by == ["name", "values"]
    assert pii[("email", "email")].by == ["name", "values"]
    assert pii[("email", "email")].share == 1.0  # share of the non-null values
    assert pii[("login", "email")].by == ["values"] and pii[("login", "email")].share == 1.0
    assert pii[("payment", "card")].by == ["values"]
    assert pii[("last_ip", "ip")].by == ["name", "values"]
    assert pii[("phone", "phone")].tagged and not pii[("email", "email")].tagged
    assert "column name 'email'" in pii[("email", "email")].reason
    assert "100% of sampled values" in pii[("login", "email")].reason


def test_file_source_figures(proj: Project, report: SurveyReport) -> None:
    st = report.source("products").stream("products")
    assert (st.rows, st.parts, st.rows_estimated, st.complete) == (5, 2, False, True)
    files = (proj.root / "data" / "products").glob("*.csv")
    assert st.bytes == sum(f.stat().st_size for f in files)
    price = st.column("price")
    assert price.nulls == 2 and price.null_rate == 0.4
    assert st.key is None and st.freshness is None and st.pii == []  # product names: no PII


def test_unreachable_sources_say_why(report: SurveyReport) -> None:
    lost, typo = report.source("lost"), report.source("typo")
    assert lost.status == "unreachable" and lost.reachable is False and not lost.streams
    assert lost.error is not None and "does not exist" in lost.error and "lost" in lost.error
    assert typo.status == "unreachable"
    assert typo.error is not None and "custmers" in typo.error and "not found" in typo.error


def test_stream_sources_are_listed_not_probed(report: SurveyReport) -> None:
    clicks = report.source("clicks")
    assert (clicks.status, clicks.reachable, clicks.note) == ("not probed", None, STREAM_NOTE)
    assert clicks.location == "topic clicks" and not clicks.streams
    assert not [g for g in report.gaps if g.source == "clicks"]


def test_gaps(report: SurveyReport) -> None:
    got = {(g.severity, g.kind, g.source, g.stream): g for g in report.gaps}
    # crm declares a cursor: repeated keys are versions the load resolves (newest wins)
    versions = got["info", "duplicate_keys", "crm", "customers"]
    assert "2 customer_id value(s)" in versions.message and "updated_at" in versions.fix
    assert ("error", "unreachable", "lost", None) in got
    assert ("error", "unreachable", "typo", None) in got
    stale = got["warning", "stale", "crm", "customers"]
    assert "2024-03-01 10:00" in stale.message and "31d old" in stale.message
    pii = got["warning", "untagged_pii", "crm", "customers"]
    assert set(pii.columns) == {"full_name", "email", "login", "payment", "last_ip"}
    assert "sources.crm.columns" in pii.fix
    assert got["warning", "high_nulls", "crm", "customers"].columns == ["email"]
    assert got["warning", "high_nulls", "products", "products"].columns == ["price"]
    assert ("warning", "no_timestamp", "products", "products") in got
    no_key = got["warning", "no_primary_key", "products", "products"]
    assert no_key.columns == ["sku"] and "primary_key: sku" in no_key.fix
    assert ("info", "no_event_time", "notes", "notes") in got  # text cursor, not a time
    severities = [g.severity for g in report.gaps]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    assert report.headline() == "6 sources, 3 reachable, 2 blocking gaps"


def test_null_key_and_missing_key_columns_are_blocking(proj: Project, declare: Declare) -> None:
    with sqlite3.connect(proj.root / "data" / "crm.db") as db:
        db.execute("INSERT INTO customers (customer_id, full_name) VALUES (NULL, 'Zed Null')")
    db.close()
    sources = {"crm": SOURCES["crm"],
               "bad": {**SOURCES["crm"], "primary_key": "id", "cursor": "changed"}}
    p = declare(proj, sources)
    try:
        r = survey(p, now=NOW)
    finally:
        p.close()
    kinds = {(g.kind, g.source) for g in r.blocking}
    assert {("null_keys", "crm"), ("missing_key_columns", "bad"), ("missing_cursor", "bad")} \
        <= kinds
    assert r.source("crm").stream("customers").key.null_rows == 1  # type: ignore[union-attr]


def test_sampling_marks_estimates(proj: Project) -> None:
    r = survey(proj, ["crm"], sample_rows=5, now=NOW)
    st = r.source("crm").stream("customers")
    assert st.rows == 23 and not st.rows_estimated  # the connector counted exactly
    assert st.sampled_rows == 5 and not st.complete
    assert all(c.estimated for c in st.columns) and st.key and st.key.estimated
    assert st.freshness and st.freshness.exact  # the connector's max over the whole table
    console = Console(record=True, width=200)
    render(r, console)
    text = console.export_text()
    assert "~" in text  # estimates are marked


def test_names_select_sources_and_unknown_names_fail(proj: Project) -> None:
    r = survey(proj, ["products", "clicks"], now=NOW)
    assert [s.name for s in r.sources] == ["products", "clicks"]
    with pytest.raises(UsageError) as exc:
        survey(proj, ["crm", "nope"])
    assert "nope" in exc.value.message and "crm, products, notes" in exc.value.message


def test_nothing_is_loaded(proj: Project, report: SurveyReport) -> None:
    assert not (proj.root / "lake").exists() or not any((proj.root / "lake").iterdir())
    assert proj.catalog.list_datasets(limit=10).items == []


def test_a_connector_bug_does_not_hide_other_sources(
        proj: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from tarmac.ingest.files import FileConnector

    def broken(self: object, stream: Stream, rows: int) -> Sample:
        raise RuntimeError("boom")

    monkeypatch.setattr(FileConnector, "sample", broken)
    monkeypatch.delenv("TARMAC_DEBUG", raising=False)
    r = survey(proj, ["crm", "products"], now=NOW)
    assert r.source("crm").status == "reachable"
    products = r.source("products")
    assert products.status == "failed" and products.error == "RuntimeError: boom"


# -- JSON, terminal, HTML ---------------------------------------------------------------------


def test_json_round_trip(report: SurveyReport) -> None:
    d = report.to_dict()
    again = json.loads(json.dumps(d))
    assert again == d
    assert SurveyReport.from_dict(again).to_dict() == d
    assert d["headline"] == report.headline()
    crm = next(s for s in d["sources"] if s["name"] == "crm")
    assert crm["streams"][0]["freshness"]["newest"] == NEWEST.isoformat()


def test_terminal_summary(report: SurveyReport) -> None:
    console = Console(record=True, width=220)
    render(report, console)
    text = console.export_text()
    for expected in ("customers", "23", "updated_at 2024-03-01", "email (untagged)",
                     "does not exist", STREAM_NOTE, "gaps", "duplicate", report.headline()):
        assert expected in text, expected
    assert text.index("error") < text.index("warning") < text.rindex("info")


def test_html_is_self_contained_and_escaped(report: SurveyReport, tmp_path: Path) -> None:
    html = to_html(report)
    out = tmp_path / "survey.html"
    out.write_text(html)
    assert out.stat().st_size > 1000
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert report.headline() in html
    # the notes table's cursor value is <script>...: shown, but as text
    assert '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' in html
    assert "<script" not in html.lower()
    assert "<link" not in html and "src=" not in html and "@import" not in html
    assert 'style="width:21.7%"' in html  # the email null-rate bar: 5 of 23
    assert "badge pii" in html and "untagged" in html
    assert "Fix:" in html and "loads keep the newest by updated_at" in html


def test_html_escapes_column_names(project: Project, declare: Declare) -> None:
    data = project.root / "data"
    data.mkdir()
    (data / "x.csv").write_text('id,"<img src=x onerror=alert(1)>"\n1,a\n2,b\n')
    p = declare(project, {"x": {"type": "file", "path": "data/x.csv", "primary_key": "id"}})
    try:
        html = to_html(survey(p))
    finally:
        p.close()
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


# -- CLI --------------------------------------------------------------------------------------


def _run(p: Project, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(p.root), "survey", *args])
    return result.exit_code, result.output


def test_cli_prints_the_summary_and_exits_0_despite_gaps(proj: Project) -> None:
    code, out = _run(proj)
    assert code == 0, out
    assert "crm" in out and "customers" in out and "gaps" in out
    assert "6 sources, 3 reachable, 2 blocking gaps" in out


def test_cli_writes_json_and_html(proj: Project, tmp_path: Path) -> None:
    j, h = tmp_path / "out" / "survey.json", tmp_path / "out" / "survey.html"
    code, out = _run(proj, "crm", "products", "--json", str(j), "--html", str(h),
                     "--sample-rows", "10", "--stale-after", "30d")
    assert code == 0, out
    assert f"wrote {j}" in out.replace("\n", "") and f"wrote {h}" in out.replace("\n", "")
    d = json.loads(j.read_text())
    assert [s["name"] for s in d["sources"]] == ["crm", "products"]
    assert d["sample_rows"] == 10 and d["stale_after_seconds"] == 30 * 86400
    crm = d["sources"][0]["streams"][0]
    assert crm["sampled_rows"] == 10 and crm["rows"] == 23 and crm["key"]["estimated"]
    assert "<!DOCTYPE html>" in h.read_text()


def test_cli_usage_errors_exit_2(proj: Project) -> None:
    code, out = _run(proj, "crm", "nope")
    assert code == 2 and "nope" in out and "declared sources" in out
    code, out = _run(proj, "--stale-after", "soon")
    assert code == 2 and "--stale-after" in out
    code, _ = _run(proj, "--sample-rows", "0")
    assert code == 2


def test_cli_without_sources(project: Project) -> None:
    code, out = _run(project)
    assert code == 0 and "no sources declared" in out


# -- the pieces on Arrow arrays ---------------------------------------------------------------


def test_luhn() -> None:
    values = pa.array(["4111 1111 1111 1111", "4111 1111 1111 1112", "4012-8888-8888-1881",
                       "378282246310005", None, "79927398713", "0000000000000", "abc"])
    assert luhn_valid(values).to_pylist() == [True, False, True, True, None, False, False,
                                              False]
    assert looks_like("card", values).to_pylist()[:4] == [True, False, True, True]
    chunked = pa.chunked_array([["4111111111111111"], ["4111111111111112"]])
    assert luhn_valid(chunked).to_pylist() == [True, False]


def test_ip_addresses() -> None:
    good = ["192.168.0.1", "8.8.8.8", "::1", "2001:db8::1", "::", "fe80::1%eth0",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::ffff:10.0.0.1", "1::"]
    bad = ["256.1.1.1", "1.2.3", "12:30:45", "2001:db8:::1", "hello", "1.2.3.4.5",
           "2025-06-30T12:30:45"]
    for v in good:
        ipaddress.ip_address(v.split("%")[0])  # the test's own premise
    assert looks_like("ip", pa.array(good)).to_pylist() == [True] * len(good)
    assert looks_like("ip", pa.array(bad)).to_pylist() == [False] * len(bad)


def test_emails_phones_names() -> None:
    assert looks_like("email", pa.array(["a.b+c@x.co.uk", "nope", "x@y", " Ann@Ex.com "])) \
        .to_pylist() == [True, False, False, True]
    phones = ["+1-555-123-4567", "(020) 7946 0958", "+44 20 7946 0958", "0049 30 1234567"]
    not_phones = ["2025-06-30", "10.20.30.40", "12345678", "06/30/2025", "KM-D001"]
    assert looks_like("phone", pa.array(phones)).to_pylist() == [True] * len(phones)
    assert looks_like("phone", pa.array(not_phones)).to_pylist() == [False] * len(not_phones)
    assert looks_like("name", pa.array(["Ann Lee", "José Álvarez", "Jean-Luc Picard",
                                        "Lee, Ann", "nimbus x1", "Nimbus X1", "ANN"])) \
        .to_pylist() == [True, True, True, True, False, False, False]


def test_kinds_by_name() -> None:
    assert kinds_by_name("customerEmail") == ["email"]
    assert kinds_by_name("Phone Number") == ["phone"]
    assert kinds_by_name("first_name") == ["name"]
    assert kinds_by_name("card_number") == ["card"]
    assert kinds_by_name("client_ip") == ["ip"]
    for harmless in ("zip", "shipping", "description", "name", "product_name", "telemetry"):
        assert kinds_by_name(harmless) == [], harmless


def test_value_threshold_and_tags() -> None:
    half = pa.array(["a@x.com", "b@x.com", "hello", "world", None, None])
    assert value_shares(half, ["email"]) == {"email": 0.5}
    table = pa.table({"contact": half, "name": ["Ann Lee", "Bob Novak", "Eve Silva",
                                                "Hugo Tanaka", "Ines Okafor", "Jon Lee"]})
    # half the contacts are emails: below the default threshold, above a lower one; the names
    # are person names by their values alone
    assert [(f.column, f.kind, f.by) for f in detect_pii(table)] == [("name", "name",
                                                                      ["values"])]
    found = {(f.column, f.kind) for f in detect_pii(table, threshold=0.4)}
    assert ("contact", "email") in found
    # a bare `name` column counts by name only when the stream is about people
    people = detect_pii(table, stream="crm customers")
    assert [(f.column, f.by) for f in people] == [("name", ["name", "values"])]
    declared = parse_sources({"s": {"type": "file", "path": "a.csv", "columns": {
        "name": {"tags": ["name"]}}}}, Path("tarmac.yaml"))["s"].columns
    assert detect_pii(table, declared, stream="users")[0].tagged


def test_key_profile() -> None:
    t = pa.table({"a": [1, 1, 1, 2, None, 3], "b": ["x", "x", "y", "x", "x", None]})
    k = key_profile(t, ["a"])
    assert (k.distinct, k.duplicate_values, k.duplicate_rows, k.null_rows) == (3, 1, 2, 1)
    k = key_profile(t, ["a", "b"])
    assert (k.distinct, k.duplicate_values, k.duplicate_rows, k.null_rows) == (3, 1, 1, 2)
    assert key_profile(t, ["a", "zz"]).missing == ["zz"]


def test_freshness_prefers_the_connectors_exact_newest() -> None:
    stream = Stream("s", "s", "s", "here")
    rows = pa.table({"id": [1, 2], "updated_at": ["2024-01-01T00:00:00Z", "2024-02-01 08:00"],
                     "expires": pa.array([datetime(2030, 1, 1), None], pa.timestamp("us"))})
    sample = Sample(stream, rows, total_rows=1000, estimated=False)
    f = freshness(sample, None, NOW)
    assert f and f.column == "updated_at" and not f.exact
    assert f.newest == datetime(2024, 2, 1, 8, tzinfo=UTC) and f.stale
    exact = Sample(stream, rows, 1000, newest={"updated_at": datetime(2024, 3, 31, 12)})
    f = freshness(exact, "updated_at", NOW)
    assert f and f.exact and f.age_seconds == 86400 and not f.stale
    numeric = freshness(Sample(stream, rows, 2), "id", NOW, complete=True)
    assert numeric and not numeric.temporal and numeric.newest == 2 and numeric.exact
    assert freshness(Sample(stream, pa.table({"x": [1]}), 1), None, NOW) is None


def test_parse_times_and_durations() -> None:
    got = parse_times(pa.array(["2024-01-02", "2024-01-02T03:04:05+02:00",
                                "2024-01-02 03:04:05.1234567", "01/02/2024", None, "x"]))
    assert got.to_pylist() == [datetime(2024, 1, 2, tzinfo=UTC),
                               datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC),
                               datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
                               None, None, None]
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("12h") == timedelta(hours=12) and parse_duration("3") == timedelta(3)
    with pytest.raises(UsageError):
        parse_duration("soon")
    assert format_age(3 * 86400 + 5) == "3d" and format_age(90) == "1m"


# -- HTTP, through the real connector and a local API ------------------------------------------


def test_http_source(project: Project, declare: Declare) -> None:
    from tarmac.demo import TicketsServer

    tickets = [{"ticket_id": f"T-{i:04d}", "agent_email": f"agent{i % 7}@support.example.com",
                "client_ip": IPS[i % len(IPS)], "opened_at": f"2024-03-{1 + i % 28:02d}T09:00:00Z",
                "satisfaction": None if i % 2 else 4} for i in range(250)]
    (project.root / "tickets.json").write_text(json.dumps(tickets))
    with TicketsServer(project.root / "tickets.json") as api:
        p = declare(project, {
            "tickets": {"type": "http", "url": api.url, "paginate": "cursor",
                        "primary_key": "ticket_id"},
            "down": {"type": "http", "url": "http://127.0.0.1:9/nothing", "retries": 1,
                     "backoff": 0.01}})
        try:
            r = survey(p, now=NOW)
        finally:
            p.close()
    st = r.source("tickets").stream("tickets")
    assert (st.rows, st.rows_estimated, st.parts) == (250, False, 3)  # 100 records per page
    assert st.key and st.key.duplicate_values == 0 and st.column("satisfaction").null_rate == 0.5
    assert {(f.column, f.kind) for f in st.pii} == {("agent_email", "email"), ("client_ip", "ip")}
    assert st.freshness and st.freshness.column == "opened_at"
    assert st.freshness.newest == datetime(2024, 3, 28, 9, tzinfo=UTC)
    down = r.source("down")
    assert down.status == "unreachable" and down.error and "down" in down.error
    assert r.headline() == "2 sources, 1 reachable, 1 blocking gap"
