"""Anchors in an object store (moto's S3 server on 127.0.0.1) and to a signed webhook (a local
HTTP receiver): published, read back, a cut tail caught by `tarmac audit verify`; a target that
is down never loses or blocks a record and is reported as `audit.anchor_failed`."""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from conftest import require_module
from ledger.test_audit_anchors import configure, record_some  # (tests/ is on sys.path)
from tarmac.cli import app
from tarmac.ledger.keys import ENV_VAR
from tarmac.project import Project
from tarmac.webhooks import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

runner = CliRunner()
BUCKET = "audit-anchors"
SECRET = "anchor-signing-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 in server mode on a free port, with one bucket."""
    server_module = require_module("moto.server", "S3 (moto)", "moto[server]")
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port,
                                              verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test"
                 ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The environment a project reaches the S3 server with (as for an S3 lake), and a boto3
    client to look at the bucket."""
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_REGION": "us-east-1",
                        "TARMAC_STORAGE_AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


class Receiver:
    """A local HTTP server recording every POST; answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/anchors"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("ANCHOR_SECRET", SECRET)
    r = Receiver()
    yield r
    r.close()


def cli(p: Project, *args: str) -> tuple[int, str]:
    got = runner.invoke(app, ["--project", str(p.root), *args])
    assert got.exception is None or isinstance(got.exception, SystemExit), got.exception
    return got.exit_code, got.output


def objects(client: Any, prefix: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def failures(p: Project) -> list[dict[str, Any]]:
    return [json.loads(r.details) for r in p.ledger.audit(action="audit.anchor_failed").items]


# -- object store -------------------------------------------------------------------------


def test_s3_anchors_publish_read_back_and_catch_a_cut_tail(project: Project, s3: Any) -> None:
    p = configure(project, f"path: s3://{BUCKET}/team/acme.anchors, every_records: 3")
    try:
        record_some(p, 7)
        chain = p.catalog.list_audit(limit=1, newest_first=False).items[0].hash
        keys = objects(s3, "team/acme.anchors/")
        assert keys == [f"team/acme.anchors/{chain}/{seq:020d}.json" for seq in (3, 6)]
        body = json.loads(s3.get_object(Bucket=BUCKET, Key=keys[-1])["Body"].read())
        assert body["seq"] == 6 and body["chain"] == chain
        latest = p.ledger.latest_anchor()
        assert latest is not None and latest.seq == 6 and latest.hash == body["hash"]
        assert p.ledger.verify().ok and not failures(p)

        code, out = cli(p, "audit", "anchor")  # publish the head (7) now
        assert code == 0 and f"s3://{BUCKET}/team/acme.anchors" in out
        assert p.ledger.latest_anchor().seq == 7  # type: ignore[union-attr]
        code, out = cli(p, "audit", "verify")
        assert code == 0 and "checked against the anchor 7:" in out

        with p.catalog.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM audit_log WHERE seq >= 6"))
        result = p.ledger.verify()
        assert not result.ok and result.bad_seq == 7
        assert "the chain ends at record 5 but the anchor names record 7: records were " \
               "removed from the end" in (result.problem or "")
        code, out = cli(p, "audit", "verify")
        assert code == 1 and "TAMPERED" in out and "removed from the end" in out
    finally:
        p.close()


def test_every_mac_stripped_is_caught_by_the_s3_anchor(project: Project, s3: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """As with the file: the anchor remembers that its record was keyed."""
    monkeypatch.setenv(ENV_VAR, "ab" * 32)
    p = configure(project, f"path: s3://{BUCKET}/keyed, every_records: 2")
    try:
        record_some(p, 4)
        assert p.ledger.latest_anchor().mac is not None  # type: ignore[union-attr]
        assert p.ledger.verify().ok
        with p.catalog.engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_log SET mac = NULL, key_id = NULL"))
        result = p.ledger.verify()
        assert not result.ok and "published anchor says record 4 was keyed" in \
            (result.problem or "")
    finally:
        p.close()


def test_an_overwritten_s3_anchor_is_reported(project: Project, s3: Any) -> None:
    p = configure(project, f"path: s3://{BUCKET}/overwrite, every_records: 2")
    try:
        record_some(p, 2)
        key = objects(s3, "overwrite/")[-1]
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"not json")
        result = p.ledger.verify()
        assert not result.ok and result.kind == "anchor"
        assert f"s3://{BUCKET}/{key}" in (result.problem or "") and "malformed" in \
            (result.problem or "")
    finally:
        p.close()


def test_an_unreachable_store_never_loses_a_record(project: Project, s3: Any,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TARMAC_STORAGE_AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    p = configure(project, f"path: s3://{BUCKET}/down, every_records: 2")
    try:
        with caplog.at_level(logging.WARNING, logger="tarmac.ledger"):
            record_some(p, 4)
        actions = [r.action for r in p.catalog.iter_audit()]
        assert actions.count("test.action") == 4  # every record, and one failure a trigger
        assert actions.count("audit.anchor_failed") == 2
        found = failures(p)
        assert [f["seq"] for f in found] == [5, 2]  # newest first: tried at each trigger
        assert found[0]["failed"][0]["target"] == f"s3://{BUCKET}/down"
        assert "could not publish audit anchor" in caplog.text
    finally:
        p.close()


# -- webhook ------------------------------------------------------------------------------


def test_webhook_receives_each_anchor_signed(project: Project, receiver: Receiver) -> None:
    p = configure(project, f"webhook: {receiver.url}, webhook_secret: \"${{ANCHOR_SECRET}}\", "
                           "every_records: 3")
    try:
        record_some(p, 3)
        assert len(receiver.requests) == 1
        headers, body = receiver.requests[0]
        expected = "sha256=" + sign(SECRET, headers[TIMESTAMP_HEADER.lower()], body)
        assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], expected)
        assert sign("another secret", headers[TIMESTAMP_HEADER.lower()], body) not in \
            headers[SIGNATURE_HEADER.lower()]
        sent = json.loads(body)
        kept = p.ledger.latest_anchor()  # the file anchor: what verify reads back
        assert kept is not None and sent == {"project": "test", **kept.to_dict()}
        assert sent["seq"] == 3 and headers[KEY_HEADER.lower()] == f"{kept.chain}-3"
        assert p.ledger.anchor_targets[1].startswith("webhook http://127.0.0.1:")
        assert SECRET not in (p.root / "tarmac.yaml").read_text()
    finally:
        p.close()


def test_webhook_down_records_still_written_and_failure_reported(
        project: Project, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.status = 503
    p = configure(project, f"webhook: {receiver.url}, webhook_secret: \"${{ANCHOR_SECRET}}\", "
                           "every_records: 2")
    try:
        with caplog.at_level(logging.WARNING, logger="tarmac.ledger"):
            record_some(p, 2)
        assert [r.action for r in p.catalog.iter_audit()] == \
            ["test.action", "test.action", "audit.anchor_failed"]
        assert len(receiver.requests) == 3  # the first try and two retries, with backoff
        (failed,) = failures(p)
        assert failed["seq"] == 2 and len(failed["failed"]) == 1
        where = failed["failed"][0]
        assert where["target"].startswith("webhook http://127.0.0.1:")
        assert "HTTP 503" in where["error"] and "/anchors" not in where["error"]
        assert p.ledger.latest_anchor().seq == 2  # type: ignore[union-attr]
        assert "could not publish audit anchor 2 to webhook" in caplog.text

        record_some(p, 1)  # not the next trigger yet: no new attempt
        assert len(receiver.requests) == 3
        receiver.status = 200
        record_some(p, 1)  # the next trigger: the then-current head goes out
        assert json.loads(receiver.requests[-1][1])["seq"] == 5
        assert len(failures(p)) == 1

        receiver.status = 500
        code, out = cli(p, "audit", "anchor")
        assert code == 1 and "to webhook http://127.0.0.1:" in out and "HTTP 500" in out
        assert "published to" in out and p.ledger.verify().ok
    finally:
        p.close()


@pytest.mark.parametrize(("anchor", "message"), [
    ("webhook: https://siem.example/a", "audit_anchor.webhook needs webhook_secret"),
    ("webhook: ftp://siem.example/a, webhook_secret: x", "expected an http:// or https:// URL"),
    ("path: gs://bucket/anchors", "expected a file path or s3://BUCKET/PREFIX"),
    ("webhook: https://x/a, webhook_secret: \"${NOT_SET_ANCHOR_VAR}\"", "NOT_SET_ANCHOR_VAR"),
])
def test_bad_anchor_settings_name_the_key(project: Project, anchor: str, message: str) -> None:
    yaml = project.root / "tarmac.yaml"
    yaml.write_text(yaml.read_text() + f"audit_anchor: {{{anchor}}}\n")
    code, out = cli(project, "audit", "verify")
    assert code == 2 and message in out and "audit_anchor" in out


def test_missing_moto_skips_on_a_laptop_and_fails_under_ci(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs the Python package moto"):
        require_module("no_such_module_here", "S3 (moto)", "moto[server]")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must exercise the S3 \\(moto\\) path"):
        require_module("no_such_module_here", "S3 (moto)", "moto[server]")
