"""The periodic check of the PBX's CDR against the cloud (docs/cdr-backfill.md, "Reconciliation").

Backfill covers the gaps the agent *knows* of (it was stopped, AMI was down). The check covers the rest: an end
that never reached the cloud, a call the cloud lost, a bug. Every ``[cdr] reconcile_minutes`` the agent reads
the CDR of the last ``reconcile_hours`` (up to ``late_seconds`` ago: rows still being written wait for the next
check) and reports every call that ended in it (``reconcile_report``, in parts). The cloud compares, repairs
what it can, and answers with the calls it lacks (``reconcile_resend``); the agent sends each from the CDR as
a backfilled ``call_ended`` — even one it sent before: the cloud's answer is the authority on what it lacks —
but never one it has in progress. That end has a fixed per-call seq (:data:`RESEND_SEQ`): above any the call's
own events use, and the same each time, so the cloud stores it once however often it is asked for.

A check starts only when the outbox is empty (everything sent is acknowledged): otherwise the cloud would
report as missing calls that are merely on their way.

Reading is :class:`~edge_agent.cdr.backfill.Backfiller`'s (I/O, in a worker thread); the rest here is pure.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from wire_protocol.call_events import CallEnded, CallSummary
from wire_protocol.messages import ReconcileCall, ReconcileReport, ReconcileResend, reconcile_parts

__all__ = ["RESEND_SEQ", "Check", "CheckBook", "failed_report", "new_check_id"]

log = logging.getLogger(__name__)

#: The per-call seq of an end sent again for a check. Fixed, so the event id (``<call_id>:<seq>``) is the same
#: each time the same call is sent again: the cloud's idempotent store keeps it once, and it never collides with
#: the call's own events (an open call the cloud has events 1..k of).
RESEND_SEQ = 1_000_000
#: Checks whose summaries are kept for the cloud's answer (an answer to an older one is ignored: the next
#: check asks again).
KEPT_CHECKS = 3


def new_check_id(at: datetime) -> str:
    """Sortable by time (the cloud shows the newest check), unique across restarts."""
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class Check:
    check_id: str
    since: datetime
    until: datetime
    summaries: dict[str, CallSummary]

    def reports(self) -> list[ReconcileReport]:
        calls = []
        for summary in self.summaries.values():
            try:
                calls.append(
                    ReconcileCall(
                        call_id=summary.call_id,
                        ended_at=summary.ended_at,
                        direction=summary.direction,
                        result=summary.result,
                    )
                )
            except ValidationError as exc:  # a call id the protocol cannot carry (backfill skips it too)
                log.warning("cdr: check leaves out call %s: %s", summary.call_id[:80], exc.errors()[0]["msg"])
        return reconcile_parts(self.check_id, self.since, self.until, calls)


def failed_report(check_id: str, since: datetime, until: datetime, error: str) -> ReconcileReport:
    """The check could not read the CDR: the cloud shows that instead of a result."""
    return ReconcileReport(check_id=check_id, since=since, until=until, error=error[:500])


class CheckBook:
    """The last few checks, for the cloud's answers."""

    def __init__(self) -> None:
        self._checks: OrderedDict[str, Check] = OrderedDict()

    def start(
        self,
        check_id: str,
        since: datetime,
        until: datetime,
        summaries: list[CallSummary],
        in_progress: Collection[str],
    ) -> Check:
        """A check of the calls that ended in ``[since, until)``, without the ones the agent has in progress."""
        chosen = {s.call_id: s for s in summaries if since <= s.ended_at < until and s.call_id not in in_progress}
        check = Check(check_id, since, until, chosen)
        self._checks[check_id] = check
        while len(self._checks) > KEPT_CHECKS:
            self._checks.popitem(last=False)
        return check

    def resend(self, answer: ReconcileResend, in_progress: Collection[str]) -> list[CallEnded]:
        """The backfilled ends to store for the cloud's answer (numbered by the outbox)."""
        check = self._checks.get(answer.check_id)
        if check is None:
            log.warning(
                "cdr: the cloud asked for %d call(s) of check %s, which this agent no longer holds; the "
                "next check asks again",
                len(answer.call_ids),
                answer.check_id,
            )
            return []
        events = []
        for call_id in dict.fromkeys(answer.call_ids):
            summary = check.summaries.get(call_id)
            if summary is None:
                log.warning(
                    "cdr: the cloud asked for call %s, which check %s did not report", call_id[:80], answer.check_id
                )
                continue
            if call_id in in_progress:  # the interpreter ends it itself
                continue
            events.append(
                CallEnded(call_id=call_id, seq=RESEND_SEQ, at=summary.ended_at, summary=summary, reason="backfilled")
            )
        if events:
            log.warning(
                "cdr: check %s: the cloud lacks %d call(s) the PBX ended; sending them from the CDR",
                answer.check_id,
                len(events),
            )
        return events
