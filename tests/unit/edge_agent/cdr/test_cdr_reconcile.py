"""The agent's side of the periodic CDR check: what a check reports (the period's ended calls, not the ones in
progress), in parts that fit a frame, and what the cloud's answer makes the agent send (backfilled ends, also of
calls it sent before, never of one in progress or one the check did not report)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cdr_builders import lab_master_db, lab_rows

from edge_agent.calls.channels import ChannelRules
from edge_agent.cdr.backfill import Backfiller
from edge_agent.cdr.readers import open_reader
from edge_agent.cdr.reconcile import RESEND_SEQ, CheckBook, failed_report, new_check_id
from edge_agent.cdr.settings import CdrSettings
from edge_agent.outbox import Outbox
from wire_protocol.call_events import CallSummary
from wire_protocol.messages import MAX_MESSAGE_BYTES, ReconcileResend, decode_agent_message, encode

SINCE = datetime(2026, 11, 26, 9, 50, tzinfo=UTC)
UNTIL = datetime(2026, 11, 26, 10, 30, tzinfo=UTC)


@pytest.fixture
def summaries(tmp_path: Path) -> list[CallSummary]:
    master_db = lab_master_db(tmp_path / "master.db", [row for rows in lab_rows().values() for row in rows])
    reader = open_reader(CdrSettings.model_validate({"dsn": f"sqlite://{master_db}", "timezone": "UTC"}))
    outbox = Outbox(tmp_path / "outbox.db")
    try:
        _, found = Backfiller(reader, outbox, ChannelRules).read(SINCE, UNTIL, complete_only=True)
    finally:
        reader.close()
        outbox.close()
    assert len(found) >= 15  # the lab's recorded scenarios
    return found


def test_a_check_reports_every_ended_call_but_those_in_progress(summaries: list[CallSummary]) -> None:
    busy = summaries[0].call_id
    check = CheckBook().start("20261126T103000Z-aaaaaa", SINCE, UNTIL, summaries, in_progress={busy})
    reports = check.reports()
    assert len(reports) == 1 and reports[0].parts == 1
    reported = {c.call_id: c for c in reports[0].calls}
    assert set(reported) == {s.call_id for s in summaries} - {busy}
    first = summaries[1]
    assert reported[first.call_id].result == first.result and reported[first.call_id].direction == first.direction
    assert decode_agent_message(encode(reports[0])) == reports[0]


def test_calls_outside_the_period_are_not_reported(summaries: list[CallSummary]) -> None:
    middle = sorted(s.ended_at for s in summaries)[len(summaries) // 2]
    check = CheckBook().start("c-1", SINCE, middle, summaries, in_progress=())
    assert check.summaries and all(s.ended_at < middle for s in check.summaries.values())


def test_a_busy_day_goes_in_parts_that_each_fit_a_frame(summaries: list[CallSummary]) -> None:
    template = summaries[0]
    many = [
        template.model_copy(update={"call_id": f"1764150000.{n}", "ended_at": SINCE + timedelta(seconds=n)})
        for n in range(2000)
    ]
    reports = CheckBook().start("c-2", SINCE, UNTIL, many, in_progress=()).reports()
    assert len(reports) > 1 and {r.parts for r in reports} == {len(reports)}
    assert [r.part for r in reports] == list(range(1, len(reports) + 1))
    assert all(len(encode(r).encode()) <= MAX_MESSAGE_BYTES for r in reports)
    assert sum(len(r.calls) for r in reports) == 2000


def test_an_empty_period_is_reported_too() -> None:
    reports = CheckBook().start("c-3", SINCE, UNTIL, [], in_progress=()).reports()
    assert len(reports) == 1 and reports[0].calls == [] and reports[0].parts == 1


def test_the_clouds_answer_becomes_backfilled_ends(summaries: list[CallSummary], tmp_path: Path) -> None:
    book = CheckBook()
    check = book.start("c-4", SINCE, UNTIL, summaries, in_progress=())
    wanted = [summaries[0].call_id, summaries[1].call_id, summaries[2].call_id, "not-reported.1"]
    events = book.resend(ReconcileResend(check_id="c-4", call_ids=wanted), in_progress={summaries[2].call_id})
    assert [e.call_id for e in events] == wanted[:2]
    assert all(e.reason == "backfilled" and e.summary == check.summaries[e.call_id] for e in events)
    # numbered above the call's own events, and the same each time: the cloud keeps one whatever happens
    outbox = Outbox(tmp_path / "outbox.db")
    try:
        first = outbox.append(events[:1])
        again = outbox.append(book.resend(ReconcileResend(check_id="c-4", call_ids=wanted[:1]), in_progress=()))
        assert first[0].event.event_id == again[0].event.event_id == f"{wanted[0]}:{RESEND_SEQ}"
    finally:
        outbox.close()


def test_an_answer_to_a_check_the_agent_no_longer_holds_is_ignored(summaries: list[CallSummary]) -> None:
    book = CheckBook()
    for n in range(5):  # only the last few are kept
        book.start(f"c-{n}", SINCE, UNTIL, summaries, in_progress=())
    assert book.resend(ReconcileResend(check_id="c-0", call_ids=[summaries[0].call_id]), in_progress=()) == []
    assert len(book.resend(ReconcileResend(check_id="c-4", call_ids=[summaries[0].call_id]), in_progress=())) == 1


def test_check_ids_sort_by_time_and_differ() -> None:
    early, late = datetime(2026, 11, 26, 9, tzinfo=UTC), datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert new_check_id(early) < new_check_id(late)
    assert new_check_id(early) != new_check_id(early)
    failed = failed_report(new_check_id(late), SINCE, UNTIL, "x" * 900)
    assert failed.error is not None and len(failed.error) == 500 and failed.calls == []
