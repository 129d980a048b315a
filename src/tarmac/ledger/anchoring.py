"""When and where the ledger publishes its chain head (``anchors`` says what an anchor is and
writes it).

After every commit the ledger hands its new head to ``Anchoring.maybe``: an anchor is due
``every_records`` records or ``every_minutes`` minutes after the last one published, or after
the last attempt, so a target that is down is tried again at the next trigger, not at every
commit. Publishing never raises: a target that fails is logged as a warning and handed to
``record_failure`` (the ledger appends ONE ``audit.anchor_failed`` record naming each failed
target), and the other targets are still published.

Example::

    anchoring = Anchoring(policy, "acme", opened_us=now_us(), record_failure=lambda a, f: None)
    anchoring.maybe(head_record, chain=first_hash)    # publishes when due
    anchoring.targets                                 # ['/mnt/worm/acme.anchors', ...]
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tarmac.catalog import AuditRecord, now_us
from tarmac.errors import TarmacError
from tarmac.ledger.anchors import (
    Anchor,
    AnchorFile,
    AnchorObjects,
    AnchorPolicy,
    AnchorStore,
    AnchorWebhook,
)

_log = logging.getLogger(__name__)

#: (where, why) for each target a publication failed at
Failures = list[tuple[str, str]]


class Anchoring:
    """The anchor targets of one ledger and the state that decides when the next is due."""

    def __init__(self, policy: AnchorPolicy | None, project: str, *, opened_us: int,
                 record_failure: Callable[[Anchor, Failures], int | None]) -> None:
        self.policy = policy
        self.store, self.webhook = _targets(policy, project)
        self._record_failure = record_failure
        self._opened_us = opened_us
        self._last: Anchor | None = None  # the newest anchor the store holds, once read
        self._loaded = False
        self._tried: tuple[int, int] | None = None  # (seq, time) of the last attempt

    @property
    def enabled(self) -> bool:
        return self.store is not None or self.webhook is not None

    @property
    def targets(self) -> list[str]:
        """Where anchors go: the file or object-store prefix, then the webhook (by host)."""
        return [t.where for t in (self.store, self.webhook) if t is not None]

    def latest(self, chain: str) -> Anchor | None:
        """The newest anchor of ``chain`` in the store (a ``UsageError`` if it cannot be
        read); a webhook cannot be read back."""
        return self.store.latest(chain) if self.store is not None else None

    def publish(self, anchor: Anchor) -> Failures:
        """Send ``anchor`` to every target; returns the failed ones, which are logged and
        recorded (``record_failure``). Never raises."""
        self._tried = (anchor.seq, anchor.time_us)
        failed: Failures = []
        for target in (self.store, self.webhook):
            if target is None:
                continue
            try:
                target.publish(anchor)
            except Exception as exc:  # a target down never blocks or loses a record
                why = exc.message if isinstance(exc, TarmacError) else \
                    f"{type(exc).__name__}: {exc}"
                failed.append((target.where, why[:300]))
                _log.warning("could not publish audit anchor %s to %s: %s", anchor.seq,
                             target.where, why)
            else:
                if target is self.store:
                    self._last, self._loaded = anchor, True
        if failed:
            try:
                seq = self._record_failure(anchor, failed)
            except Exception as exc:  # the warning above still says it
                _log.error("could not record the failed audit anchor: %s", exc)
            else:
                if seq is not None:  # the next trigger counts from the failure's record
                    self._tried = (seq, anchor.time_us)
        return failed

    def maybe(self, head: AuditRecord, chain: str) -> None:
        """Publish ``head`` of ``chain`` if an anchor is due (see the module docstring)."""
        policy = self.policy
        if policy is None or not self.enabled:
            return
        if not self._loaded:
            self._loaded = True
            try:
                self._last = self.latest(chain)
            except Exception as exc:  # then publish as if none was: the store says if it is up
                _log.warning("could not read the latest audit anchor from %s: %s",
                             self.store.where if self.store else "?", exc)
        last = self._last
        last_seq, last_us = (last.seq, last.time_us) if last else (0, self._opened_us)
        if self._tried is not None and self._tried[0] > last_seq:
            last_seq, last_us = self._tried
        now = now_us()
        if head.seq <= last_seq:
            return
        if (head.seq - last_seq >= policy.every_records
                or now - last_us >= policy.every_minutes * 60e6):
            self.publish(Anchor(head.seq, head.hash, head.mac, now, chain))


def _targets(policy: AnchorPolicy | None, project: str
             ) -> tuple[AnchorStore | None, AnchorWebhook | None]:
    """The readable anchor store (a file or an object-store prefix) and the webhook, if any."""
    if policy is None:
        return None, None
    store: AnchorStore | None = None
    if policy.url is not None:
        store = AnchorObjects(policy.url, policy.storage_options)
    elif policy.path is not None:
        store = AnchorFile(policy.path)
    hook = None
    if policy.webhook is not None and store is not None:
        hook = AnchorWebhook(policy.webhook, policy.webhook_secret or "", project=project)
    return store, hook


__all__ = ["Anchoring", "Failures"]
