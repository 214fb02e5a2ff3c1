"""CDR rows → call summaries: the rows the lab's Asterisk wrote for every recorded scenario give the summaries
the scenarios expect (the same expectations the AMI interpreter meets), except what a CDR cannot know."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cdr_builders import expected, lab_rows

from edge_agent.calls.channels import ChannelRules
from edge_agent.cdr.rows import CdrRow, UnusableRow, row_from_db
from edge_agent.cdr.summaries import summarize_call, summarize_rows
from sandbox.call_expectations import AnyOrder, mismatches
from wire_protocol.call_events import CallSummary

UTC_ZONE = ZoneInfo("UTC")
#: Not in a CDR: how a call moved (transfers), the click-to-call command, the recording's full path.
NOT_IN_CDR = ("transfers", "command_id", "recording")
RINGALL = ("inbound_queue_answered", "inbound_queue_abandoned", "inbound_queue_local_members", "inbound_ring_group")


def rows_of(name: str, zone: Any = UTC_ZONE) -> list[CdrRow]:
    return [row_from_db(r, zone) for r in lab_rows()[name]]


@pytest.mark.parametrize("name", sorted(lab_rows()))
def test_lab_cdr_rows_give_the_expected_summary(name: str) -> None:
    want = []
    for call in expected(name):
        call = {k: v for k, v in call.items() if k not in NOT_IN_CDR}
        if name in RINGALL:
            call["rang"] = AnyOrder(call["rang"])
        want.append(call)
    got = [s.to_json_dict() for s in summarize_rows(rows_of(name), ChannelRules())]
    assert mismatches(want, got) == []
    assert len(got) == len(want)


def test_the_transfers_final_extension_is_who_had_the_call_last() -> None:
    [blind] = summarize_rows(rows_of("blind_transfer"), ChannelRules())
    assert (blind.answered_by, blind.final_extension, blind.transfers) == ("101", "102", [])


def test_a_pickup_is_an_answer_not_a_ring() -> None:
    [call] = summarize_rows(rows_of("inbound_pickup"), ChannelRules())
    assert call.rang == ["101"] and call.answered_by == "102"


def test_the_freepbx_recordingfile_is_the_recording() -> None:
    [call] = summarize_rows(rows_of("inbound_direct_answered"), ChannelRules())
    assert call.recording is not None and call.recording.startswith("in-74951234567-") and "/" not in call.recording


def test_times_in_the_pbx_zone_become_utc() -> None:
    [utc] = summarize_rows(rows_of("outbound_answered"), ChannelRules())
    [moscow] = summarize_rows(rows_of("outbound_answered", ZoneInfo("Europe/Moscow")), ChannelRules())
    assert utc.started_at - moscow.started_at == timedelta(hours=3)
    assert moscow.started_at.tzinfo is not None and utc.talk_seconds == moscow.talk_seconds


def test_number_rules_apply_as_in_the_interpreter() -> None:
    # with 101 declared a trunk, 101's outbound call is no call of an extension: it reads as inbound from "101"
    rules = ChannelRules(trunks=frozenset({"101"}))
    [call] = summarize_rows(rows_of("internal_answered"), rules)
    assert call.direction == "inbound" and call.rang == ["102"]


def asterisk_row(**values: Any) -> dict[str, Any]:
    """A row of Asterisk's own schema (start/answer/end), as a MySQL or PostgreSQL driver returns it."""
    start = datetime(2026, 11, 26, 10, 0, 0)
    row: dict[str, Any] = {
        "start": start,
        "answer": start + timedelta(seconds=4),
        "end": start + timedelta(seconds=34),
        "clid": '"Bob" <79261234567>',
        "src": "79261234567",
        "dst": "74951234567",
        "dcontext": "from-trunk",
        "channel": "PJSIP/sipnet-00000001",
        "dstchannel": "PJSIP/201-00000002",
        "lastapp": "Dial",
        "lastdata": "PJSIP/201,30",
        "duration": 34,
        "billsec": 30,
        "disposition": "ANSWERED",
        "uniqueid": "1764151200.1",
        "linkedid": "1764151200.1",
        "sequence": 7,
    }
    row.update(values)
    return row


def test_asterisks_own_columns_and_driver_types() -> None:
    summary = summarize_call([row_from_db(asterisk_row(), UTC_ZONE)], ChannelRules())
    assert summary is not None
    assert summary.direction == "inbound" and summary.line == "74951234567" and summary.rang == ["201"]
    assert summary.answered_at == datetime(2026, 11, 26, 10, 0, 4, tzinfo=UTC) and summary.talk_seconds == 30
    assert summary.recording is None and summary.command_id is None


def test_a_table_without_linkedid_makes_each_leg_its_own_call() -> None:
    row = row_from_db(asterisk_row(linkedid=None), UTC_ZONE)
    assert row.call_id == "1764151200.1"


def test_anonymous_callers_have_no_number() -> None:
    [call] = summarize_rows([row_from_db(asterisk_row(src="anonymous"), UTC_ZONE)], ChannelRules())
    assert call.external_number is None


def test_an_extension_that_dialed_nothing_is_not_a_call() -> None:
    voicemail = asterisk_row(channel="PJSIP/201-00000003", dstchannel="", lastapp="VoiceMailMain", dst="*97")
    assert summarize_rows([row_from_db(voicemail, UTC_ZONE)], ChannelRules()) == []


def test_an_unanswered_leg_has_no_answer_time_and_mysql_zero_dates_are_none() -> None:
    row = row_from_db(asterisk_row(answer="0000-00-00 00:00:00", billsec=0, disposition="NO ANSWER"), UTC_ZONE)
    assert row.answer is None
    [call] = summarize_rows([row], ChannelRules())
    assert call.result == "missed" and call.answered_by is None and call.talk_seconds == 0


@pytest.mark.parametrize(
    "broken", [{"start": None}, {"start": "yesterday"}, {"channel": ""}, {"uniqueid": None}], ids=str
)
def test_rows_without_the_essentials_are_refused_clearly(broken: dict[str, Any]) -> None:
    with pytest.raises(UnusableRow):
        row_from_db(asterisk_row(**broken), UTC_ZONE)


def test_a_call_whose_rows_make_no_summary_is_skipped_not_fatal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from edge_agent.cdr import summaries

    real = summaries.summarize_call

    def fragile(rows: Sequence[CdrRow], rules: ChannelRules) -> CallSummary | None:
        if rows[0].call_id == "y.1":
            raise ValueError("a bug on odd rows")
        return real(rows, rules)

    monkeypatch.setattr(summaries, "summarize_call", fragile)
    odd = row_from_db(asterisk_row(uniqueid="y.1", linkedid="y.1"), UTC_ZONE)
    fine = row_from_db(asterisk_row(), UTC_ZONE)
    assert [s.call_id for s in summarize_rows([odd, fine], ChannelRules())] == ["1764151200.1"]
    assert "call y.1 skipped" in caplog.text and "a bug on odd rows" in caplog.text
