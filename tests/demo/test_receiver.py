"""The demo's webhook receiver, fed by the real webhook channel: a signed notice is accepted
and verified, a wrong secret and an unsigned request are refused with 401 (the channel records
the delivery failed, without retrying), a retry of the same notice is kept once, and the port
is freed on stop."""

from __future__ import annotations

import time

import httpx
import pytest

from tarmac.demo import WebhookReceiver
from tarmac.errors import UsageError
from tarmac.monitoring import CheckResult, webhook
from tarmac.monitoring.alerts import Alert

SECRET = "demo-signing-secret"


def _alert(key: str = "churn-drift-plan-1", column: str = "plan") -> Alert:
    now = int(time.time() * 1_000_000)
    result = CheckResult("churn", "drift", "drifted", column, value=0.42, threshold=0.1,
                         effect="large", window="2026-12-06", run_id="run-7")
    return Alert(result, "firing", key, since=now, at=now)


def test_a_signed_notice_is_received_and_verified() -> None:
    with WebhookReceiver(secret=SECRET) as hooks:
        assert hooks.url.startswith("http://127.0.0.1:") and hooks.url.endswith("/alerts")
        delivery = webhook(hooks.url, secret=SECRET).send(_alert())
        assert delivery.delivered and delivery.status_code == 200 and delivery.attempts == 1
        [got] = hooks.wait(1)
    assert got.accepted and got.problem is None and not got.duplicate
    assert got.signature is not None and got.signature.startswith("sha256=")
    assert got.key == "churn-drift-plan-1" == got.payload["idempotency_key"]
    assert got.headers["content-type"] == "application/json"
    assert {k: got.payload[k] for k in ("monitor", "check", "column", "verdict", "state")} == {
        "monitor": "churn", "check": "drift", "column": "plan", "verdict": "drifted",
        "state": "firing"}
    assert hooks.alerts == [got.payload]


def test_a_wrong_secret_or_no_signature_is_refused() -> None:
    with WebhookReceiver(secret=SECRET) as hooks:
        wrong = webhook(hooks.url, secret="not-the-secret", retries=3).send(_alert())
        assert not wrong.delivered and wrong.status_code == 401 and wrong.attempts == 1
        unsigned = httpx.post(hooks.url, json={"monitor": "churn"})
        assert unsigned.status_code == 401
        stale = httpx.post(hooks.url, content=b"{}", headers={
            "X-Tarmac-Timestamp": str(int(time.time()) - 3600),
            "X-Tarmac-Signature": "sha256=00"})
        assert stale.status_code == 401 and "replay" in stale.json()["message"]
        assert httpx.post(hooks.url.replace("/alerts", "/other"), json={}).status_code == 404
        assert hooks.wait(1, timeout=0.2) == [] and hooks.alerts == []
    problems = [r.problem for r in hooks.received]
    assert len(problems) == 4 and not any(r.accepted for r in hooks.received)
    assert "does not match" in str(problems[0]) and "unsigned" in str(problems[1])


def test_a_retried_notice_is_kept_once_and_stop_frees_the_port() -> None:
    hooks = WebhookReceiver(secret=SECRET).start()
    url = hooks.url
    channel = webhook(url, secret=SECRET)
    assert channel.send(_alert()).delivered and channel.send(_alert()).delivered
    assert channel.send(_alert("churn-drift-region-1", "region")).delivered
    assert [r.duplicate for r in hooks.received] == [False, True, False]
    assert [a["column"] for a in hooks.alerts] == ["plan", "region"]
    hooks.stop()
    hooks.stop()  # twice is fine
    assert len(hooks.received) == 3  # still readable
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json={}, timeout=2)
    with pytest.raises(UsageError, match="not running"):
        _ = hooks.url
    # without a secret nothing is checked
    with WebhookReceiver() as open_hooks:
        assert webhook(open_hooks.url).send(_alert()).delivered
        assert open_hooks.wait(1)[0].signature is None
