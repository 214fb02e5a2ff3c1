"""Which calls of a period to send from the CDR, and the gaps in the agent's AMI view that need it.

**The gap.** While AMI is connected the agent keeps ``ami_covered_until`` (outbox meta) a few seconds behind
the clock. On every AMI (re)connect — after a restart too — the period from the stored value to the moment of
the PBX snapshot is a gap: calls may have started and ended in it unseen. The gap is stored (meta
``backfill_gaps``) before anything else happens, so a crash does not forget it.

**Reading it.** CDR rows are written when legs hang up, sometimes late, so a gap is read twice: ``settle``
seconds after it closed, and again ``late`` seconds after (``[cdr] late_seconds``); then it is dropped. A read
that fails (database down) is retried on the next pass and the gap kept.

**What is sent.** Calls that *ended* in the gap (with ``SLACK`` either side: the AMI watchdog needs up to 20 s
to see a dead link; but never from before the AMI session that preceded the gap, when the agent was not
watching), minus the calls the outbox already ended (``ended_calls``), minus the calls the interpreter has in
progress (it adopted them from the snapshot and will end them itself). Each goes as one ``call_ended`` with
reason ``backfilled``, numbered by the outbox (after the call's earlier events when it started while the agent
watched). Rows are read from ``LOOKBACK`` before the gap, for calls that started before it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from edge_agent.calls.channels import ChannelRules
from edge_agent.errors import OutboxError
from edge_agent.outbox import Outbox
from wire_protocol.call_events import CallEnded, CallSummary

from .readers import CdrReader
from .rows import CelEvent
from .summaries import summarize_rows, with_transfers

__all__ = ["LOOKBACK", "SLACK", "BackfillReport", "Backfiller", "Gap", "GapBook", "choose_calls", "gap_period"]

log = logging.getLogger(__name__)

#: Calls are looked for this far before a period's start (a long call that began before it).
LOOKBACK = timedelta(hours=6)
#: A gap is widened by this much each side (the AMI watchdog's detection time, clock steps).
SLACK = timedelta(seconds=60)
COVERED_KEY = "ami_covered_until"
SINCE_KEY = "ami_covered_since"
GAPS_KEY = "backfill_gaps"


@dataclass
class BackfillReport:
    since: datetime
    until: datetime
    rows: int = 0
    sent: list[CallSummary] = field(default_factory=list)
    already_sent: list[str] = field(default_factory=list)
    in_progress: list[str] = field(default_factory=list)


def choose_calls(
    summaries: list[CallSummary],
    since: datetime,
    until: datetime,
    *,
    ended: Collection[str],
    in_progress: Collection[str],
    report: BackfillReport,
) -> list[CallSummary]:
    """The summaries to send: ended in ``[since, until)``, not ended by the agent, not in progress."""
    chosen = []
    for summary in summaries:
        if not since <= summary.ended_at < until:
            continue
        if summary.call_id in ended:
            report.already_sent.append(summary.call_id)
        elif summary.call_id in in_progress:
            report.in_progress.append(summary.call_id)
        else:
            chosen.append(summary)
    return chosen


class Backfiller:
    """Reads a period's CDR rows and stores the calls to send in the outbox (one transaction).

    :meth:`read` touches only the CDR database (the agent runs it in a worker thread); :meth:`store` only the
    outbox (the event loop's thread, which owns the outbox connection)."""

    def __init__(
        self,
        reader: CdrReader,
        outbox: Outbox,
        rules: Callable[[], ChannelRules],
        ended: Callable[[CallEnded, int], None] | None = None,
    ) -> None:
        self.reader = reader
        self.outbox = outbox
        self._rules = rules
        #: Told of each backfilled ``call_ended`` once it is stored (with its outbox seq): queues its recording.
        self._ended = ended

    def read(self, since: datetime, until: datetime, *, complete_only: bool = False) -> tuple[int, list[CallSummary]]:
        """(rows read, calls that ended in the period); raises :class:`CdrError`. With CEL, transfers are added,
        and ``complete_only`` leaves out calls without their ``LINKEDID_END`` yet (rows may still be coming)."""
        rows = self.reader.rows(since - LOOKBACK, until)
        rules = self._rules()
        summaries = [s for s in summarize_rows(rows, rules) if since <= s.ended_at < until]
        events = self.reader.cel_events(since - LOOKBACK, until + SLACK) if summaries else []
        if events:
            by_call: dict[str, list[CelEvent]] = {}
            for event in events:
                by_call.setdefault(event.linkedid, []).append(event)
            summaries = [with_transfers(s, by_call.get(s.call_id, []), rules) for s in summaries]
            if complete_only:
                over = {e.linkedid for e in events if e.eventtype == "LINKEDID_END"}
                summaries = [s for s in summaries if s.call_id in over]
        return len(rows), summaries

    def store(
        self,
        report: BackfillReport,
        summaries: list[CallSummary],
        *,
        in_progress: Collection[str] = (),
        dry_run: bool = False,
    ) -> BackfillReport:
        """Store the calls not sent yet as backfilled ``call_ended`` events; raises :class:`OutboxError`."""
        ended = self.outbox.ended_call_ids([s.call_id for s in summaries])
        chosen = choose_calls(
            summaries, report.since, report.until, ended=ended, in_progress=in_progress, report=report
        )
        events = []
        for summary in chosen:
            try:
                events.append(
                    CallEnded(call_id=summary.call_id, seq=1, at=summary.ended_at, summary=summary, reason="backfilled")
                )
            except ValidationError as exc:  # e.g. a call id the wire protocol cannot carry
                log.warning("cdr: call %s cannot be sent: %s", summary.call_id[:80], exc.errors()[0]["msg"])
        if events and not dry_run:
            stored = self.outbox.append(events)
            if self._ended is not None:
                for item in stored:
                    if isinstance(item.event, CallEnded):
                        try:
                            self._ended(item.event, item.seq)
                        except OutboxError as exc:  # the call is stored and goes; only its recording is lost
                            log.error("recordings: the recording of %s was not queued: %s", item.event.call_id, exc)
        sendable = {e.call_id for e in events}
        report.sent = [s for s in chosen if s.call_id in sendable]
        return report

    def run(
        self, since: datetime, until: datetime, *, in_progress: Collection[str] = (), dry_run: bool = False
    ) -> BackfillReport:
        """Read and store in one go (``edge-agent backfill``)."""
        report = BackfillReport(since, until)
        report.rows, summaries = self.read(since, until)
        return self.store(report, summaries, in_progress=in_progress, dry_run=dry_run)


@dataclass(frozen=True)
class Gap:
    start: float
    end: float
    reads: int = 0  # completed reads (a gap is read twice, then dropped)
    #: When the AMI view before the gap began: SLACK never reaches before it (the agent did not watch then).
    floor: float | None = None


class GapBook:
    """The gaps in the AMI view, kept in the outbox's meta table (timestamps are epoch seconds)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    @property
    def covered_until(self) -> float | None:
        value = self.outbox.meta(COVERED_KEY)
        return float(value) if value is not None else None

    def cover(self, until: float) -> None:
        self.outbox.set_meta(COVERED_KEY, repr(until))

    def gaps(self) -> list[Gap]:
        raw = self.outbox.meta(GAPS_KEY)
        if not raw:
            return []
        try:
            return [
                Gap(float(a), float(b), int(n), float(f) if f is not None else None) for a, b, n, f in json.loads(raw)
            ]
        except (ValueError, TypeError):
            log.error("cdr: the stored backfill gaps are unreadable (%r); dropping them", raw[:200])
            return []

    def _save(self, gaps: list[Gap]) -> None:
        self.outbox.set_meta(GAPS_KEY, json.dumps([[g.start, g.end, g.reads, g.floor] for g in gaps]) if gaps else None)

    def connected(self, at: float) -> Gap | None:
        """AMI (re)connected at ``at``: record the gap since the view was last complete (none on a first start)."""
        since = self.covered_until
        floor = self.outbox.meta(SINCE_KEY)
        gap = None
        if since is not None and at > since:
            gap = Gap(since, at, floor=float(floor) if floor is not None else None)
            self._save([*self.gaps(), gap])
        self.outbox.set_meta(SINCE_KEY, repr(at))
        self.cover(at)
        return gap

    def add(self, gap: Gap) -> None:
        self._save([*self.gaps(), gap])

    def done_reading(self, gap: Gap, *, last: bool) -> None:
        rest = [g for g in self.gaps() if (g.start, g.end) != (gap.start, gap.end)]
        self._save(rest if last else [*rest, Gap(gap.start, gap.end, gap.reads + 1, gap.floor)])


def gap_period(gap: Gap) -> tuple[datetime, datetime]:
    """The period a gap's calls may have ended in: widened by SLACK, but not to before the agent watched."""
    since = datetime.fromtimestamp(gap.start, UTC) - SLACK
    if gap.floor is not None:
        since = max(since, datetime.fromtimestamp(gap.floor, UTC))
    return (since, datetime.fromtimestamp(gap.end, UTC) + SLACK)
