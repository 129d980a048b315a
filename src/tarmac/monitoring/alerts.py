"""Alerts: tell people when a monitor's check fails, once per episode, and when it clears.

Channels say where a notice goes: ``webhook(url)`` POSTs a JSON payload (or a Slack-compatible
one) signed with HMAC-SHA256, retrying timeouts, connection errors, 429 and 5xx with exponential
backoff inside a bounded time; ``log()`` writes one structured log line. A channel never
raises: it returns a ``Delivery`` saying what happened.

An ``Alerter`` receives each evaluation's check results and decides what to send, keeping its
state per (monitor, check, column) in the catalog so that it survives restarts:

* a check that starts failing fires ONE notice (a new episode, with its own idempotency key);
* while it keeps failing nothing is sent until ``cooldown`` has passed since the last notice,
  then a reminder;
* when it passes again a ``resolved`` notice is sent once;
* a verdict that decides nothing ("not enough data") changes nothing;
* a notice some channel failed to deliver is sent again to that channel (same idempotency key)
  at the next evaluation that still agrees with it.

Every notice and every channel's outcome goes through the ledger: the state change and the
delivery records (``alert_history``) commit with an audit record. Secrets never reach the
catalog, the audit trail or the log: a webhook is recorded by its ``${VAR}`` template or its
host only. See ``docs/monitoring.md`` ("Alerts").

Example::

    from tarmac.monitoring.alerts import Alerter, CheckResult, log, webhook
    alerter = Alerter(p, [webhook("${ALERT_URL}", secret="${ALERT_SECRET}"), log()],
                      cooldown="6h")
    notices = alerter.observe(CheckResult.from_drift(report, monitor="churn"))
    [n.state for n in notices]                   # ['firing']: 'amount' drifted
    alert_history(p, "churn")[0].outcome         # 'delivered'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from tarmac import webhooks
from tarmac.catalog import now_us, to_datetime
from tarmac.catalog.alerts import (
    AlertState,
    AlertStatus,
    DeliveryRecord,
    Outcome,
    add_deliveries,
    alert_deliveries,
    alert_states,
    delivered_channels,
    put_alert_state,
)
from tarmac.errors import UsageError, echo
from tarmac.humanize import duration, parse_duration
from tarmac.webhooks import (
    ENV_REFERENCE,
    ERROR_CHARS,
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)

if TYPE_CHECKING:
    from tarmac.monitoring._drift import DriftReport
    from tarmac.project import Project

Severity = Literal["info", "warning", "critical"]

#: verdicts that mean a check is failing (fire) and that it passes (resolve); any other
#: verdict ("not enough data", labels not complete yet) decides nothing and changes nothing
FIRING_VERDICTS = frozenset({"drifted", "failed", "decayed", "breached", "stale"})
PASSING_VERDICTS = frozenset({"not drifted", "passed", "ok"})
#: the environment variable a webhook takes its signing secret from when none is given
SECRET_ENV = "TARMAC_ALERT_SECRET"
PAYLOAD_VERSION = 1

_log = logging.getLogger("tarmac.alerts")
_ENV = ENV_REFERENCE


# -- what is alerted on ---------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict in one evaluation of a monitor: what an ``Alerter`` receives.

    ``column`` is ``None`` for a check of no column (an SLO, freshness of the whole log).
    ``value``/``threshold`` are the measured figure and the line it crossed, ``effect`` its
    size class, ``window`` the evaluated window (text), ``run_id`` the evaluation's run.
    ``severity`` defaults from the effect (large: critical, else warning).
    """

    monitor: str
    check: str
    verdict: str
    column: str | None = None
    value: float | None = None
    threshold: float | None = None
    effect: str | None = None
    window: str | None = None
    run_id: str | None = None
    endpoint: str | None = None
    reason: str = ""
    severity: Severity | None = None

    def __post_init__(self) -> None:
        for what, value, most in (("monitor", self.monitor, 128), ("check", self.check, 64),
                                  ("column", self.column or "", 256),
                                  ("verdict", self.verdict, 32)):
            if not isinstance(value, str) or len(value) > most or \
                    (not value and what != "column"):
                raise UsageError(f"a check result's {what} must be text of 1 to {most} "
                                 f"characters, got {echo(value)!r}")

    @classmethod
    def from_drift(cls, report: DriftReport, *, monitor: str, check: str = "drift",
                   window: str | None = None, run_id: str | None = None,
                   endpoint: str | None = None) -> list[CheckResult]:
        """One result per column of a drift report: the effect size as the value, the
        ``min_effect`` cut of its statistic as the threshold."""
        out = []
        for c in report:
            cuts = report.thresholds.get(c.effect or "")
            floor = cuts[("small", "medium", "large").index(report.min_effect)] \
                if cuts and report.min_effect != "none" else None
            out.append(cls(monitor, check, c.verdict, c.column, c.effect_size, floor,
                           c.effect_class, window, run_id, endpoint, c.reason))
        return out


@dataclass(frozen=True)
class Alert:
    """One notice about one (monitor, check, column): what every channel sends.

    ``state`` is ``firing`` or ``resolved``; ``notice`` numbers the notices of one episode
    (1 the first, 2 and on reminders); ``key`` is the idempotency key, the same on every
    retry and every re-send of this notice, so a receiver can drop duplicates.
    """

    result: CheckResult
    state: AlertState
    key: str
    since: int
    at: int
    notice: int = 1

    @property
    def severity(self) -> Severity:
        if self.state == "resolved":
            return "info"
        if self.result.severity is not None:
            return self.result.severity
        return "critical" if self.result.effect == "large" else "warning"

    @property
    def summary(self) -> str:
        """One line for people, with no link in it."""
        r = self.result
        what = f"{r.check} on '{r.column}'" if r.column else r.check
        head = f"[{self.state.upper()}] {r.monitor}: {what} is {r.verdict}"
        figures = []
        if r.value is not None:
            figures.append(f"value {r.value:.4g}")
        if r.threshold is not None:
            figures.append(f"threshold {r.threshold:.4g}")
        if r.effect:
            figures.append(f"effect {r.effect}")
        if r.window:
            figures.append(f"window {r.window}")
        text = head + (f" ({', '.join(figures)})" if figures else "")
        if self.state == "firing" and self.notice > 1:
            text += f"; still firing since {_iso(self.since)} (reminder {self.notice - 1})"
        elif self.state == "resolved":
            text += f"; it had been firing since {_iso(self.since)}"
        return text + (f". {r.reason}" if r.reason else "")

    def payload(self) -> dict[str, Any]:
        """The JSON body a webhook posts (``docs/monitoring.md`` lists the fields)."""
        r = self.result
        return {"version": PAYLOAD_VERSION, "monitor": r.monitor,
                "endpoint": r.endpoint or r.monitor, "check": r.check, "column": r.column,
                "verdict": r.verdict, "value": _finite(r.value),
                "threshold": _finite(r.threshold), "effect": r.effect, "window": r.window,
                "run_id": r.run_id, "state": self.state, "severity": self.severity,
                "notice": self.notice, "reminder": self.state == "firing" and self.notice > 1,
                "since": _iso(self.since), "at": _iso(self.at), "idempotency_key": self.key,
                "summary": self.summary}

    def slack(self) -> dict[str, Any]:
        """A Slack-compatible body (incoming webhooks): ``text`` plus Block Kit ``blocks``."""
        r = self.result
        icon = {"critical": ":red_circle:", "warning": ":large_orange_circle:",
                "info": ":large_green_circle:"}[self.severity]
        fields = [("Monitor", r.monitor), ("Check", r.check), ("Column", r.column),
                  ("Verdict", r.verdict), ("Value", _fmt(r.value)),
                  ("Threshold", _fmt(r.threshold)), ("Effect", r.effect),
                  ("Window", r.window)]
        return {
            "text": self.summary,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                            "text": f"{self.state.capitalize()}: {r.monitor} "
                                                    f"{r.check}"[:150]}},
                {"type": "section", "text": {"type": "mrkdwn",
                                             "text": f"{icon} {self.summary}"[:3000]}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{value}"[:2000]}
                    for name, value in fields if value is not None][:10]},
                {"type": "context", "elements": [
                    {"type": "mrkdwn", "text": f"severity {self.severity} · run "
                                               f"{r.run_id or '-'} · key {self.key}"}]},
            ],
        }


# -- channels -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What one channel did with one notice: ``delivered`` or ``failed`` after ``attempts``
    tries, the last HTTP status and error (truncated, with no secret or URL in it)."""

    channel: str
    outcome: Outcome
    attempts: int
    status_code: int | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


class Channel(Protocol):
    """Where notices go. ``name`` is what the history records (never a secret); ``send``
    never raises."""

    @property
    def name(self) -> str: ...

    def send(self, alert: Alert) -> Delivery: ...


@dataclass(frozen=True)
class Webhook:
    """POST a notice to ``url`` (see ``webhook``)."""

    url: str
    secret: str | None = None
    format: Literal["json", "slack"] = "json"
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.5
    max_seconds: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)
    transport: httpx.BaseTransport | None = field(default=None, repr=False, compare=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    @property
    def name(self) -> str:
        """``webhook:`` and the URL as written if it names variables (``${ALERT_URL}``), else
        its scheme and host: a webhook URL often IS the secret (Slack's carry a token)."""
        return f"webhook:{webhooks.display_name(self.url)}"[:256]

    def send(self, alert: Alert) -> Delivery:
        """POST the notice, retrying what may pass on a retry; never raises."""
        secret = self.secret if self.secret is not None \
            else os.environ.get(SECRET_ENV) or None
        body = json.dumps(alert.slack() if self.format == "slack" else alert.payload(),
                          sort_keys=True, separators=(",", ":"), default=str).encode()
        got = webhooks.post(self.url, body, secret=secret, timeout=self.timeout,
                            retries=self.retries, backoff=self.backoff,
                            max_seconds=self.max_seconds,
                            headers={KEY_HEADER: alert.key, **self.headers},
                            user_agent="tarmac-alerts", transport=self.transport,
                            sleep=self.sleep)
        return Delivery(self.name, "delivered" if got.ok else "failed", got.attempts,
                        got.status_code, got.error, got.seconds)


@dataclass(frozen=True)
class Log:
    """Write each notice as one structured log line (see ``log``)."""

    logger: str = "tarmac.alerts"

    @property
    def name(self) -> str:
        return "log"

    def send(self, alert: Alert) -> Delivery:
        level = logging.WARNING if alert.state == "firing" else logging.INFO
        payload = alert.payload()
        logging.getLogger(self.logger).log(
            level, "alert %s", json.dumps(payload, sort_keys=True, default=str),
            extra={"alert": payload})
        return Delivery(self.name, "delivered", 1)


def webhook(url: str, *, secret: str | None = None, format: Literal["json", "slack"] = "json",
            timeout: float = 5.0, retries: int = 3, backoff: float = 0.5,
            max_seconds: float = 30.0, headers: Mapping[str, str] | None = None) -> Webhook:
    """A webhook channel: each notice is POSTed to ``url`` as JSON.

    ``url`` and ``secret`` may name environment variables as in ``tarmac.yaml``
    (``${ALERT_URL}``, ``${VAR:-default}``), read at each send, so definitions never hold the
    secret. Without ``secret`` the ``TARMAC_ALERT_SECRET`` variable is used; when there is a
    secret the body is signed: ``X-Tarmac-Timestamp: <unix seconds>`` and
    ``X-Tarmac-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``. Every request
    carries ``Idempotency-Key``. ``format="slack"`` posts ``{"text", "blocks"}`` for a Slack
    incoming webhook. Timeouts, connection errors, 429 and 5xx are retried ``retries`` times
    after ``backoff``, ``2*backoff``, ... seconds, never past ``max_seconds`` in all; any
    other 4xx fails at once.

    Example::

        webhook("${ALERT_URL}", secret="${ALERT_SECRET}", timeout=2, retries=2)
        webhook("https://hooks.slack.com/services/${SLACK_PATH}", format="slack")
    """
    if format not in ("json", "slack"):
        raise UsageError(f"webhook format must be 'json' or 'slack', got {format!r}")
    if not isinstance(url, str) or not url.strip():
        raise UsageError("webhook needs a URL (such as '${ALERT_URL}' or 'https://...')")
    if not _ENV.search(url) and urlsplit(url).scheme not in ("http", "https"):
        raise UsageError(f"webhook URL must start with http:// or https:// (got a "
                         f"{urlsplit(url).scheme or 'relative'!s} URL)")
    if timeout <= 0 or retries < 0 or backoff < 0 or max_seconds <= 0:
        raise UsageError("webhook timeout and max_seconds must be > 0, retries and backoff "
                         f">= 0 (got timeout={timeout}, retries={retries}, backoff={backoff}, "
                         f"max_seconds={max_seconds})")
    return Webhook(url, secret, format, float(timeout), int(retries), float(backoff),
                   float(max_seconds), dict(headers or {}))


def log(logger: str = "tarmac.alerts") -> Log:
    """A channel that writes each notice as one log line, ``alert {json payload}``, at
    WARNING when firing and INFO when resolved (the payload is also the record's ``alert``
    attribute, for structured log handlers).

    Example: ``Alerter(p, [log()]).observe(results)``
    """
    return Log(logger)


# -- the alerter ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """One notice an ``observe`` call sent (or re-sent) and what each channel did with it."""

    alert: Alert
    deliveries: tuple[Delivery, ...]
    resent: bool = False

    @property
    def state(self) -> AlertState:
        return self.alert.state

    @property
    def delivered(self) -> bool:
        """Every channel delivered it."""
        return all(d.delivered for d in self.deliveries)


class Alerter:
    """Turns each evaluation's check results into notices: one per episode, reminders after
    ``cooldown``, a ``resolved`` notice when the check passes again (rules in the module
    docstring). State lives in the project's catalog, so a new ``Alerter`` (a restarted
    scheduler) carries on where the last one stopped.

    ``clock`` (microseconds since the epoch) is for tests and replays.

    Example::

        alerter = Alerter(p, [webhook("${ALERT_URL}"), log()], cooldown="6h")
        alerter.observe([CheckResult("churn", "freshness", "stale", value=9000, threshold=7200)])
    """

    def __init__(self, project: Project, channels: Sequence[Channel], *,
                 cooldown: str | float | timedelta = "6h",
                 clock: Callable[[], int] = now_us) -> None:
        if not channels:
            raise UsageError("an Alerter needs at least one channel (webhook(...) or log())")
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise UsageError(f"two alert channels record as the same name: {names}",
                             hint="give each webhook its own URL or ${VAR}")
        self.project = project
        self.channels = list(channels)
        self.cooldown_us = int(_seconds(cooldown) * 1_000_000)
        self.clock = clock

    def observe(self, results: Iterable[CheckResult]) -> list[Notice]:
        """Decide and send what these results call for; returns the notices sent. Never
        raises for a channel's failure: that is recorded (``alert_history``) and retried at
        the next evaluation."""
        by_monitor: dict[str, list[CheckResult]] = {}
        for r in results:
            by_monitor.setdefault(r.monitor, []).append(r)
        notices = []
        for monitor, rows in by_monitor.items():
            states = alert_states(self.project.catalog, monitor)
            seen: set[tuple[str, str]] = set()
            for r in rows:
                key = (r.check, r.column or "")
                if key in seen:  # the same check twice in one call: the second sees the first
                    states = alert_states(self.project.catalog, monitor)
                seen.add(key)
                notice = self._one(r, states.get(key))
                if notice is not None:
                    notices.append(notice)
        return notices

    def _one(self, r: CheckResult, status: AlertStatus | None) -> Notice | None:
        now = self.clock()
        firing = r.verdict in FIRING_VERDICTS
        if not firing and r.verdict not in PASSING_VERDICTS:
            return None  # "not enough data" and the like decide nothing
        if status is not None and status.pending and (status.state == "firing") == firing:
            return self._resend(r, status, now)
        if firing:
            if status is None or status.state == "resolved":
                incident, since, number = str(uuid.uuid4()), now, 1
            elif now - status.notified_at >= self.cooldown_us:
                incident, since, number = status.incident, status.since, status.notice + 1
            else:
                return None  # still firing, inside the cooldown: already told
            state: AlertState = "firing"
        else:
            if status is None or status.state == "resolved":
                return None
            incident, since, number, state = status.incident, status.since, \
                status.notice + 1, "resolved"
        alert = Alert(r, state, _key(r, incident, state, number), since, now, number)
        new = AlertStatus(r.monitor, r.check, r.column or "", state, incident, since, number,
                          alert.key, now, True, r.verdict, now)
        # the intent first: a crash while sending leaves a pending notice to re-send
        self.project.ledger.commit(f"alert.{state}", f"monitor:{r.monitor}", _audit(alert),
                                   change=lambda conn: put_alert_state(conn, new))
        return self._deliver(alert, new, self.channels, resent=False)

    def _resend(self, r: CheckResult, status: AlertStatus, now: int) -> Notice:
        done = delivered_channels(self.project.catalog, status.notice_key)
        todo = [c for c in self.channels if c.name not in done]
        alert = Alert(r, status.state, status.notice_key, status.since, now, status.notice)
        return self._deliver(alert, status, todo, resent=True)

    def _deliver(self, alert: Alert, status: AlertStatus, channels: Sequence[Channel], *,
                 resent: bool) -> Notice:
        deliveries = tuple(_safe_send(c, alert) for c in channels)
        at = self.clock()
        r = alert.result
        rows = [{"monitor": r.monitor, "check_name": r.check, "column_name": r.column or "",
                 "state": alert.state, "notice_key": alert.key, "channel": d.channel,
                 "outcome": d.outcome, "attempts": d.attempts, "status_code": d.status_code,
                 "error": d.error, "seconds": d.seconds, "at": at} for d in deliveries]
        done = replace(status, pending=not all(d.delivered for d in deliveries), updated_at=at)

        def change(conn: Any) -> None:
            add_deliveries(conn, rows)
            put_alert_state(conn, done)

        outcomes = [{k: v for k, v in asdict(d).items() if v is not None} for d in deliveries]
        self.project.ledger.commit(
            "alert.delivered" if not done.pending else "alert.failed", f"monitor:{r.monitor}",
            {"key": alert.key, "state": alert.state, "check": r.check, "column": r.column,
             "resent": resent, "deliveries": outcomes}, change=change)
        return Notice(alert, deliveries, resent)


def alert_history(project: Project, monitor: str | None = None, *,
                  limit: int = 100) -> list[DeliveryRecord]:
    """The deliveries of ``monitor``'s notices (all monitors' if ``None``), newest first: per
    notice and channel the outcome, attempts, last status code and error.

    Example::

        [(d.state, d.channel, d.outcome) for d in alert_history(p, "churn")]
        # [('resolved', 'webhook:${ALERT_URL}', 'delivered'), ('firing', ..., 'failed')]
    """
    return alert_deliveries(project.catalog, monitor=monitor, limit=limit).items


# -- helpers --------------------------------------------------------------------------------


def _safe_send(channel: Channel, alert: Alert) -> Delivery:
    """A channel's delivery; a channel that raises anyway is a failed delivery, not an error
    that stops the monitor."""
    try:
        return channel.send(alert)
    except Exception as exc:  # noqa: BLE001 - a channel must never stop the monitor
        return Delivery(channel.name, "failed", 1,
                        error=f"{type(exc).__name__}: {str(exc)[:ERROR_CHARS]}")


def _key(r: CheckResult, incident: str, state: str, number: int) -> str:
    text = f"{r.monitor}\x1f{r.check}\x1f{r.column or ''}\x1f{incident}\x1f{state}\x1f{number}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _audit(alert: Alert) -> dict[str, Any]:
    r = alert.result
    return {"key": alert.key, "check": r.check, "column": r.column, "verdict": r.verdict,
            "value": _finite(r.value), "threshold": _finite(r.threshold), "effect": r.effect,
            "window": r.window, "run_id": r.run_id, "notice": alert.notice,
            "severity": alert.severity}


def _seconds(value: str | float | timedelta) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value).total_seconds()
        except ValueError as exc:
            raise UsageError(f"alert cooldown: {exc}") from None
    else:
        seconds = float(value)
    if seconds < 0:
        raise UsageError(f"alert cooldown must be >= 0, got {duration(seconds)}")
    return seconds


def _iso(us: int) -> str:
    stamp = to_datetime(us)
    return stamp.isoformat().replace("+00:00", "Z") if stamp else ""


def _finite(v: float | None) -> float | None:
    return None if v is None or v != v or v in (float("inf"), float("-inf")) else float(v)


def _fmt(v: float | None) -> str | None:
    return None if v is None else f"{v:.4g}"


__all__ = ["FIRING_VERDICTS", "PASSING_VERDICTS", "SECRET_ENV", "SIGNATURE_HEADER",
           "TIMESTAMP_HEADER", "Alert", "Alerter", "Channel", "CheckResult", "Delivery",
           "Log", "Notice", "Webhook", "alert_history", "log", "sign", "webhook"]
