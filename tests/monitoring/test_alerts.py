"""Alerts against a real HTTP receiver on 127.0.0.1: signed JSON and Slack payloads, retries on
5xx, a timeout recorded as failed without raising, 4xx not retried, and one alert per episode
(cooldown reminders, one resolved notice) kept across a restart of the project."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import tarmac
from tarmac.errors import UsageError
from tarmac.monitoring import Alerter, CheckResult, alert_history, drift, log, webhook
from tarmac.monitoring.alerts import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tarmac.project import Project

SECRET = "s3cr3t-signing-key"
HOUR = 3600 * 1_000_000


@dataclass
class Receiver:
    """A webhook receiver: answers each request with the next planned reply (a status, or
    ``("sleep", seconds)`` before a 200), then 200; keeps every request."""

    url: str = ""
    plan: list[Any] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self) -> Any:
        with self.lock:
            return self.plan.pop(0) if self.plan else 200

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _h, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with rec.lock:
                rec.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            reply = rec.reply()
            if isinstance(reply, tuple):
                time.sleep(reply[1])
                reply = 200
            try:
                self.send_response(reply)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if reply < 300 else b"receiver says no")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook/tok3n"
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def hook_env(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    monkeypatch.setenv("ALERT_URL", receiver.url)
    monkeypatch.setenv("ALERT_SECRET", SECRET)
    return receiver


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000 * 1_000_000

    def __call__(self) -> int:
        return self.now


def drifted(column: str = "amount", verdict: str = "drifted") -> CheckResult:
    return CheckResult("churn", "drift", verdict, column, value=0.31, threshold=0.01,
                       effect="large", window="2026-12-05", run_id="run-1")


def _no_secret_anywhere(p: Project, *secrets: str) -> None:
    history = json.dumps([d.to_dict() for d in alert_history(p)], default=str)
    audit = json.dumps([r.details for r in p.ledger.audit(limit=1000).items])
    for s in secrets:
        assert s not in history and s not in audit


def test_a_signed_json_notice_verifies(project: Project, hook_env: Receiver) -> None:
    hook = webhook("${ALERT_URL}", secret="${ALERT_SECRET}")
    [notice] = Alerter(project, [hook]).observe([drifted()])
    assert notice.state == "firing" and notice.delivered
    [(headers, body)] = hook_env.requests
    stamp = headers[TIMESTAMP_HEADER.lower()]
    expected = "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], expected)
    assert headers[SIGNATURE_HEADER.lower()] == "sha256=" + sign(SECRET, stamp, body)
    assert sign("wrong", stamp, body) not in headers[SIGNATURE_HEADER.lower()]
    payload = json.loads(body)
    assert {k: payload[k] for k in ("monitor", "endpoint", "check", "column", "verdict",
                                    "value", "threshold", "effect", "window", "run_id",
                                    "state", "severity")} == {
        "monitor": "churn", "endpoint": "churn", "check": "drift", "column": "amount",
        "verdict": "drifted", "value": 0.31, "threshold": 0.01, "effect": "large",
        "window": "2026-12-05", "run_id": "run-1", "state": "firing", "severity": "critical"}
    assert headers["idempotency-key"] == payload["idempotency_key"]
    assert "amount" in payload["summary"] and "http" not in payload["summary"]
    [record] = alert_history(project, "churn")
    assert (record.outcome, record.attempts, record.status_code, record.channel) == \
        ("delivered", 1, 200, "webhook:${ALERT_URL}")
    _no_secret_anywhere(project, SECRET, "tok3n")


def test_slack_format_and_a_literal_url_recorded_by_host(project: Project,
                                                         receiver: Receiver) -> None:
    hook = webhook(receiver.url, format="slack")
    [notice] = Alerter(project, [hook]).observe([drifted()])
    [body] = receiver.bodies()
    assert set(body) == {"text", "blocks"} and body["text"] == notice.alert.summary
    assert body["blocks"][0]["type"] == "header"
    assert any(f["text"] == "*Column*\namount" for f in body["blocks"][2]["fields"])
    [(headers, _)] = receiver.requests
    assert SIGNATURE_HEADER.lower() not in headers  # no secret: unsigned
    assert alert_history(project)[0].channel.startswith("webhook:http://127.0.0.1:")
    _no_secret_anywhere(project, "tok3n")


def test_5xx_is_retried_until_delivered(project: Project, hook_env: Receiver) -> None:
    hook_env.plan = [500, 503]
    hook = webhook("${ALERT_URL}", secret="${ALERT_SECRET}", backoff=0.01)
    [notice] = Alerter(project, [hook]).observe([drifted()])
    assert notice.delivered and notice.deliveries[0].attempts == 3
    keys = {h["idempotency-key"] for h, _ in hook_env.requests}
    assert len(hook_env.requests) == 3 and len(keys) == 1  # one notice, retried
    [record] = alert_history(project, "churn")
    assert (record.outcome, record.attempts, record.status_code) == ("delivered", 3, 200)


def test_a_timeout_is_retried_then_recorded_failed_without_raising(
        project: Project, hook_env: Receiver) -> None:
    hook_env.plan = [("sleep", 1.0), ("sleep", 1.0)]
    hook = webhook("${ALERT_URL}", secret="${ALERT_SECRET}", timeout=0.2, retries=1,
                   backoff=0.01)
    [notice] = Alerter(project, [hook, log()]).observe([drifted()])
    by_channel = {d.channel: d for d in notice.deliveries}
    failed = by_channel["webhook:${ALERT_URL}"]
    assert (failed.outcome, failed.attempts) == ("failed", 2)
    assert "failed after 2 attempts" in (failed.error or "")
    assert "timed out" in (failed.error or "")
    assert by_channel["log"].delivered  # the other channel is not held up
    records = {r.channel: r for r in alert_history(project, "churn")}
    assert records["webhook:${ALERT_URL}"].outcome == "failed"
    assert records["webhook:${ALERT_URL}"].attempts == 2
    assert project.ledger.audit(action="alert.failed").items
    _no_secret_anywhere(project, SECRET, "tok3n")


def test_a_4xx_is_not_retried(project: Project, hook_env: Receiver) -> None:
    hook_env.plan = [404]
    hook = webhook("${ALERT_URL}", backoff=0.01)
    [notice] = Alerter(project, [hook]).observe([drifted()])
    [d] = notice.deliveries
    assert (d.outcome, d.attempts, d.status_code) == ("failed", 1, 404)
    assert d.error is not None and d.error.startswith("HTTP 404")
    assert len(hook_env.requests) == 1


def test_one_episode_one_alert_reminder_after_cooldown_and_one_resolve_across_restarts(
        tmp_path: Path, hook_env: Receiver) -> None:
    from conftest import make_project

    root = tmp_path / "proj"
    p = make_project(root)
    clock = Clock()
    hook = webhook("${ALERT_URL}", secret="${ALERT_SECRET}")

    first = Alerter(p, [hook], cooldown="6h", clock=clock).observe(
        [drifted(), drifted("plan", "not drifted")])
    assert [n.state for n in first] == ["firing"]
    clock.now += HOUR
    assert Alerter(p, [hook], cooldown="6h", clock=clock).observe([drifted()]) == []
    p.close()

    p = tarmac.open(root)  # a restarted scheduler: state comes from the catalog
    again = Alerter(p, [hook], cooldown="6h", clock=clock)
    clock.now += 2 * HOUR
    assert again.observe([drifted(), drifted("amount", "not enough data")]) == []
    clock.now += 4 * HOUR  # 7h since the first notice
    [reminder] = again.observe([drifted()])
    assert (reminder.state, reminder.alert.notice) == ("firing", 2)
    assert reminder.alert.since == first[0].alert.since
    clock.now += HOUR
    [resolved] = again.observe([drifted(verdict="not drifted")])
    assert resolved.state == "resolved" and resolved.delivered
    assert again.observe([drifted(verdict="not drifted")]) == []
    [new] = again.observe([drifted()])  # a new episode: a new key
    assert new.state == "firing" and new.alert.notice == 1

    bodies = hook_env.bodies()
    assert [(b["state"], b["notice"], b["reminder"]) for b in bodies] == [
        ("firing", 1, False), ("firing", 2, True), ("resolved", 3, False), ("firing", 1, False)]
    assert len({b["idempotency_key"] for b in bodies}) == 4
    assert [d.state for d in alert_history(p, "churn")] == ["firing", "resolved", "firing",
                                                            "firing"]
    p.close()


def test_an_undelivered_notice_is_resent_with_its_key_at_the_next_evaluation(
        project: Project, hook_env: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    hook_env.plan = [500]
    clock = Clock()
    alerter = Alerter(project, [webhook("${ALERT_URL}", retries=0), log()], clock=clock)
    with caplog.at_level(logging.INFO, logger="tarmac.alerts"):
        [failed] = alerter.observe([drifted()])
        assert not failed.delivered
        clock.now += HOUR  # inside the cooldown, but the webhook never got it
        [resent] = alerter.observe([drifted()])
    assert resent.resent and resent.delivered
    assert [d.channel for d in resent.deliveries] == ["webhook:${ALERT_URL}"]  # log had it
    assert resent.alert.key == failed.alert.key
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.WARNING
    assert json.loads(caplog.records[0].getMessage().removeprefix("alert "))["column"] == \
        "amount"
    assert alerter.observe([drifted()]) == []  # delivered everywhere: quiet again


def test_an_unset_variable_is_a_failed_delivery_naming_it(project: Project,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_ALERT_URL", raising=False)
    [notice] = Alerter(project, [webhook("${NO_SUCH_ALERT_URL}")]).observe([drifted()])
    [d] = notice.deliveries
    assert d.outcome == "failed" and "NO_SUCH_ALERT_URL is not set" in (d.error or "")


def test_bad_channel_settings_are_usage_errors(project: Project) -> None:
    with pytest.raises(UsageError, match="http:// or https://"):
        webhook("ftp://example.com/hook")
    with pytest.raises(UsageError, match="'json' or 'slack'"):
        webhook("${ALERT_URL}", format="xml")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="cooldown"):
        Alerter(project, [log()], cooldown="soon")
    with pytest.raises(UsageError, match="same name"):
        Alerter(project, [log(), log()])


def test_check_results_from_a_drift_report(project: Project) -> None:
    rng = np.random.default_rng(3)
    ref = pa.table({"a": rng.normal(size=500), "b": rng.normal(size=500)})
    cur = pa.table({"a": rng.normal(1.0, size=500), "b": rng.normal(size=500)})
    results = CheckResult.from_drift(drift(ref, cur), monitor="churn", window="w1")
    assert [(r.column, r.verdict) for r in results] == [("a", "drifted"), ("b", "not drifted")]
    assert results[0].effect == "large" and results[0].threshold == 0.01
    [notice] = Alerter(project, [log()]).observe(results)
    assert notice.alert.result.column == "a"


def test_state_and_history_on_each_catalog_backend(any_project: Project) -> None:
    clock = Clock()
    alerter = Alerter(any_project, [log()], cooldown=0, clock=clock)
    assert [n.state for n in alerter.observe([drifted()])] == ["firing"]
    clock.now += 1
    assert [n.alert.notice for n in alerter.observe([drifted()])] == [2]  # no cooldown
    assert [n.state for n in alerter.observe([drifted(verdict="passed")])] == ["resolved"]
    assert [(d.state, d.outcome) for d in any_project.monitoring.alert_history("churn")] == [
        ("resolved", "delivered"), ("firing", "delivered"), ("firing", "delivered")]
    assert any_project.monitoring.alert_history("other") == []


def test_retries_stop_at_max_seconds_and_the_env_secret_signs(
        project: Project, hook_env: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARMAC_ALERT_SECRET", "from-env")
    hook_env.plan = [("sleep", 1.0)] * 10
    hook = webhook("${ALERT_URL}", timeout=0.2, retries=10, backoff=0.01, max_seconds=0.5)
    [notice] = Alerter(project, [hook]).observe([drifted()])
    [d] = notice.deliveries
    assert d.outcome == "failed" and 1 <= d.attempts <= 3  # not the 11 retries allow
    headers, body = hook_env.requests[0]
    assert headers[SIGNATURE_HEADER.lower()] == "sha256=" + sign(
        "from-env", headers[TIMESTAMP_HEADER.lower()], body)
    _no_secret_anywhere(project, "from-env")


class Killed(BaseException):
    """A process killed while sending (not an error a channel could catch)."""


@dataclass(frozen=True)
class Dies:
    name: str = "log"

    def send(self, alert: Any) -> Any:
        raise Killed


def test_a_notice_interrupted_mid_send_is_sent_after_the_restart_with_its_key(
        project: Project, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(Killed):
        Alerter(project, [Dies()]).observe([drifted()])
    assert project.ledger.audit(action="alert.firing").items  # the intent was committed
    with caplog.at_level(logging.INFO, logger="tarmac.alerts"):
        [notice] = Alerter(project, [log()]).observe([drifted()])
    assert notice.resent and notice.delivered and notice.alert.notice == 1
    sent = json.loads(caplog.records[0].getMessage().removeprefix("alert "))
    assert sent["idempotency_key"] == notice.alert.key
    assert [d.outcome for d in alert_history(project, "churn")] == ["delivered"]


def test_a_check_given_twice_in_one_call_alerts_once_and_bad_names_are_refused(
        project: Project) -> None:
    assert [n.state for n in Alerter(project, [log()]).observe([drifted(), drifted()])] == \
        ["firing"]
    with pytest.raises(UsageError, match="column must be text of 1 to 256"):
        CheckResult("churn", "drift", "drifted", "x" * 300)
    with pytest.raises(UsageError, match="monitor must be"):
        CheckResult("", "drift", "drifted")
