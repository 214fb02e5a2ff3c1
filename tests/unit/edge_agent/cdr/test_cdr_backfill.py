"""Backfill: the calls of a period the agent never ended are stored once, as backfilled ``call_ended`` events;
the gaps in the AMI view are remembered across restarts; ``edge-agent backfill`` does it on demand."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cdr_builders import lab_master_db, lab_rows

from edge_agent.calls.channels import ChannelRules
from edge_agent.cdr.backfill import SLACK, Backfiller, GapBook, gap_period
from edge_agent.cdr.command import parse_moment, run_backfill
from edge_agent.cdr.readers import open_reader
from edge_agent.cdr.settings import CdrSettings
from edge_agent.cli import main
from edge_agent.config import load_config
from edge_agent.errors import ConfigError
from edge_agent.outbox import Outbox
from wire_protocol.call_events import CallEnded, CallStarted

SINCE = datetime(2026, 11, 26, 9, 50, tzinfo=UTC)
UNTIL = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
ALL = sorted({row["linkedid"] for rows in lab_rows().values() for row in rows})


@pytest.fixture
def master_db(tmp_path: Path) -> Path:
    return lab_master_db(tmp_path / "master.db", [row for rows in lab_rows().values() for row in rows])


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "data" / "outbox.db")


def backfiller(master_db: Path, outbox: Outbox) -> Backfiller:
    reader = open_reader(CdrSettings.model_validate({"dsn": f"sqlite://{master_db}", "timezone": "UTC"}))
    return Backfiller(reader, outbox, ChannelRules)


def stored(outbox: Outbox) -> list[CallEnded]:
    events = [item.event for item in outbox.pending(limit=10_000)]
    assert all(isinstance(e, CallEnded) for e in events)
    return [e for e in events if isinstance(e, CallEnded)]


def test_every_call_of_the_period_once_then_nothing(master_db: Path, outbox: Outbox) -> None:
    report = backfiller(master_db, outbox).run(SINCE, UNTIL)
    events = stored(outbox)
    assert sorted(e.call_id for e in events) == ALL == sorted(s.call_id for s in report.sent)
    assert all(e.reason == "backfilled" and e.seq == 1 and e.at == e.summary.ended_at for e in events)
    again = backfiller(master_db, outbox).run(SINCE, UNTIL)
    assert again.sent == [] and sorted(again.already_sent) == ALL and len(stored(outbox)) == len(ALL)


def test_calls_the_agent_ended_or_has_in_progress_are_left_alone(master_db: Path, outbox: Outbox) -> None:
    seen, running = ALL[0], ALL[1]
    first = backfiller(master_db, outbox).run(SINCE, UNTIL, dry_run=True).sent
    [summary] = [s for s in first if s.call_id == seen]
    outbox.append([CallEnded(call_id=seen, seq=4, at=UNTIL, summary=summary)])  # the agent's own end
    report = backfiller(master_db, outbox).run(SINCE, UNTIL, in_progress={running})
    assert report.already_sent == [seen] and report.in_progress == [running]
    assert {s.call_id for s in report.sent} == set(ALL) - {seen, running}


def test_only_calls_that_ended_in_the_period(master_db: Path, outbox: Outbox) -> None:
    # the queue call answered by 102 started 09:52:17 and ended a few seconds later
    report = backfiller(master_db, outbox).run(
        datetime(2026, 11, 26, 9, 52, 20, tzinfo=UTC), datetime(2026, 11, 26, 9, 52, 30, tzinfo=UTC)
    )
    assert report.sent and all(
        datetime(2026, 11, 26, 9, 52, 20, tzinfo=UTC) <= s.ended_at < datetime(2026, 11, 26, 9, 52, 30, tzinfo=UTC)
        for s in report.sent
    )
    assert len(report.sent) < len(ALL)


def test_a_call_that_started_while_the_agent_watched_continues_its_numbering(master_db: Path, outbox: Outbox) -> None:
    call = ALL[0]
    outbox.append(
        [
            CallStarted(
                call_id=call, seq=1, at=SINCE, direction="inbound", external_number=None, line=None,
                caller_extension=None,
            ),
            CallStarted(
                call_id=call, seq=2, at=SINCE, direction="inbound", external_number=None, line=None,
                caller_extension=None,
            ),
        ]
    )  # fmt: skip
    outbox.close()
    reopened = Outbox(outbox.path)  # a restarted agent: the interpreter never saw the call end
    backfiller(master_db, reopened).run(SINCE, UNTIL)
    [end] = [item.event for item in reopened.pending(limit=10_000) if item.event.call_id == call][2:]
    assert isinstance(end, CallEnded) and end.seq == 3 and end.reason == "backfilled"


def test_gaps_are_remembered_read_twice_and_survive_a_restart(outbox: Outbox) -> None:
    book = GapBook(outbox)
    assert book.connected(1000.0) is None  # the first start ever: nothing to catch up on
    book.cover(1010.0)
    gap = book.connected(1100.0)
    assert gap is not None and (gap.start, gap.end, gap.reads, gap.floor) == (1010.0, 1100.0, 0, 1000.0)
    assert book.covered_until == 1100.0
    outbox.close()
    book = GapBook(Outbox(outbox.path))
    [kept] = book.gaps()
    book.done_reading(kept, last=False)
    [again] = book.gaps()
    assert again.reads == 1
    book.done_reading(again, last=True)
    assert book.gaps() == []
    # the slack before the gap stops where the agent started watching (it knows nothing of what ended before)
    since, until = gap_period(kept)
    assert since == datetime.fromtimestamp(1000.0, UTC) and until == datetime.fromtimestamp(1100.0, UTC) + SLACK
    book.cover(2000.0)
    later = book.connected(2100.0)
    assert later is not None and later.floor == 1100.0
    assert gap_period(later)[0] == datetime.fromtimestamp(2000.0, UTC) - SLACK


def test_unreadable_stored_gaps_are_dropped_with_an_error(outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    outbox.set_meta("backfill_gaps", "{not json")
    assert GapBook(outbox).gaps() == []
    assert "unreadable" in caplog.text


def environment(master_db: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "EDGE_AMI_USER": "edge",
        "EDGE_AMI_SECRET": "edge-secret",
        "EDGE_CDR_DSN": f"sqlite://{master_db}",
        "EDGE_CDR_TIMEZONE": "UTC",
        "EDGE_DATA_DIR": str(tmp_path / "data"),
    }


def test_the_command_stores_and_prints_what_it_did(master_db: Path, tmp_path: Path) -> None:
    config = load_config(environment(master_db, tmp_path))
    now = UNTIL + timedelta(hours=1)
    out = io.StringIO()
    assert run_backfill(config, SINCE, UNTIL, dry_run=True, out=out, now=now) == len(ALL)
    assert "would send 19 call(s)" in out.getvalue() and out.getvalue().count('{"backfilled"') == len(ALL)
    assert run_backfill(config, SINCE, UNTIL, dry_run=False, out=io.StringIO(), now=now) == len(ALL)
    out = io.StringIO()
    assert run_backfill(config, SINCE, UNTIL, dry_run=False, out=out, now=now) == 0
    assert "stored 0 call(s)" in out.getvalue() and "19 already sent" in out.getvalue()
    with pytest.raises(ConfigError, match="7 days"):
        run_backfill(config, SINCE, UNTIL, dry_run=True, out=io.StringIO(), now=now + timedelta(days=8))
    with pytest.raises(ConfigError, match="must be after"):
        run_backfill(config, UNTIL, SINCE, dry_run=True, out=io.StringIO(), now=now)


def test_the_cli(
    master_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in environment(master_db, tmp_path).items():
        monkeypatch.setenv(key, value)
    # the lab rows are from 2026-11-26; the command refuses periods older than 7 days, so only a dry run of "-2h"
    code = main(["backfill", "--since=-2h", "--dry-run"])
    assert code == 0 and "CDR row(s) read" in capsys.readouterr().out
    assert main(["backfill", "--since", "yesterday"]) == 1
    assert "cannot read the time" in capsys.readouterr().err


def test_times_for_the_command() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_moment("-90m", now) == now - timedelta(minutes=90)
    assert parse_moment("2026-11-26T09:00Z", now) == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert parse_moment("2026-11-26T09:00+03:00", now) == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    with pytest.raises(ConfigError):
        parse_moment("-2x", now)


def test_the_running_agent_notices_what_the_command_stored(master_db: Path, outbox: Outbox) -> None:
    assert not outbox.appended_elsewhere()
    outbox.append(
        [CallEnded(call_id="own", seq=1, at=SINCE, summary=backfiller(master_db, outbox).read(SINCE, UNTIL)[1][0])]
    )
    assert not outbox.appended_elsewhere() and outbox.depth == 1  # its own appends are counted already
    command = Outbox(outbox.path)  # edge-agent backfill, another process
    backfiller(master_db, command).run(SINCE, UNTIL)
    command.close()
    assert outbox.appended_elsewhere() and outbox.depth == 1 + len(ALL)
    assert not outbox.appended_elsewhere()


def test_doctor_reads_the_cdr(master_db: Path, tmp_path: Path) -> None:
    from edge_agent.doctor import _check_cdr

    config = load_config(environment(master_db, tmp_path))
    [check] = _check_cdr(config, lambda: UNTIL.timestamp())
    assert check.status == "ok" and f"{sum(len(r) for r in lab_rows().values())} row(s)" in check.detail
    missing = load_config({**environment(master_db, tmp_path), "EDGE_CDR_DSN": f"sqlite://{tmp_path}/none.db"})
    [check] = _check_cdr(missing, lambda: UNTIL.timestamp())
    assert check.status == "fail" and "cannot open the CDR database" in check.detail
    assert _check_cdr(load_config({"EDGE_AMI_USER": "u", "EDGE_AMI_SECRET": "s"}), lambda: UNTIL.timestamp()) == []


def test_a_call_id_the_wire_cannot_carry_is_logged_and_the_others_sent(
    outbox: Outbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = lab_rows()["internal_answered"] + lab_rows()["outbound_busy"]
    long_id = "pbx-" + "9" * 300
    rows = [dict(r, linkedid=long_id, uniqueid=long_id) if r["dst"] == "102" else r for r in rows]
    db = lab_master_db(tmp_path / "odd.db", rows)
    report = backfiller(db, outbox).run(SINCE, UNTIL)
    assert [s.call_id for s in report.sent] == ["pbx-1795686794.182"]
    assert [e.call_id for e in stored(outbox)] == ["pbx-1795686794.182"]
    assert "cannot be sent" in caplog.text
