"""The durable outbox: order, ack deletion, reopen, kill -9 mid-write, the bound, at-most-once commands."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.errors import OutboxError
from edge_agent.outbox import Outbox
from wire_protocol.call_events import CallEnded, CallEvent, CallRinging, CallSummary
from wire_protocol.messages import CommandResult

ROOT = Path(__file__).resolve().parents[3]


def ringing(call: str, seq: int = 1) -> CallEvent:
    return CallRinging(call_id=call, seq=seq, at=datetime(2026, 1, 1, tzinfo=UTC), extension="101")


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.db")


def test_events_keep_their_order_and_get_increasing_seqs(outbox: Outbox) -> None:
    first = outbox.append([ringing("a", 1), ringing("a", 2)])
    second = outbox.append([ringing("b", 1)])
    assert [e.seq for e in first + second] == [1, 2, 3]
    assert [e.event.event_id for e in outbox.pending()] == ["a:1", "a:2", "b:1"]
    assert [e.seq for e in outbox.pending(after_seq=1, limit=1)] == [2]
    assert outbox.depth == 3


def test_ack_deletes_up_to_and_seqs_are_never_reused(tmp_path: Path, outbox: Outbox) -> None:
    outbox.append([ringing("a", n) for n in range(1, 4)])
    assert outbox.ack(2) == 2
    assert [e.seq for e in outbox.pending()] == [3]
    assert outbox.ack(3) == 1 and outbox.depth == 0
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.db")
    assert reopened.append([ringing("b")])[0].seq == 4  # AUTOINCREMENT: an emptied table does not restart
    assert reopened.last_seq == 4


def test_unacked_events_survive_a_reopen(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.append([ringing("a", 1), ringing("a", 2)])
    outbox.ack(1)
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.db")
    assert reopened.depth == 1
    assert [(e.seq, e.event.event_id) for e in reopened.pending()] == [(2, "a:2")]
    db = sqlite3.connect(tmp_path / "outbox.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_renumber_after_a_reset_data_dir_keeps_every_pending_event_above_the_cloud_ack(outbox: Outbox) -> None:
    outbox.append([ringing("a", 1), ringing("a", 2)])
    assert outbox.renumber_after(100) == 2
    assert [(e.seq, e.event.event_id) for e in outbox.pending()] == [(101, "a:1"), (102, "a:2")]
    assert outbox.append([ringing("a", 3)])[0].seq == 103
    assert outbox.renumber_after(50) == 0


def test_a_call_adopted_after_a_restart_continues_its_event_numbering(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.append([ringing("a", 1), ringing("a", 2), ringing("b", 1)])
    outbox.close()
    restarted = Outbox(tmp_path / "outbox.db")  # the new interpreter numbers adopted calls from 1 again
    at = ringing("a").at
    summary = CallSummary(
        call_id="a",
        direction="internal",
        external_number=None,
        line=None,
        caller_extension="102",
        rang=["101"],
        answered_by=None,
        transfers=[],
        final_extension=None,
        result="no_answer",
        started_at=at,
        answered_at=None,
        ended_at=at,
        talk_seconds=0,
        recording=None,
        command_id=None,
    )
    ended = CallEnded(call_id="a", seq=2, at=at, summary=summary, reason="lost")
    stored = restarted.append([ringing("a", 1), ended, ringing("c", 1)])
    assert [s.event.event_id for s in stored] == ["a:3", "a:4", "c:1"]  # never reuses a:1, a:2
    assert [e.event.event_id for e in restarted.pending()][-3:] == ["a:3", "a:4", "c:1"]  # and reads back
    assert restarted.append([ringing("c", 2)])[0].event.event_id == "c:2"
    restarted.close()
    again = Outbox(tmp_path / "outbox.db")
    assert again.append([ringing("a", 1)])[0].event.event_id == "a:1"  # a ended: its numbering is forgotten
    assert again.append([ringing("b", 1)])[0].event.event_id == "b:2"
    assert again.prune_calls(older_than=float("inf")) == 3


def test_warns_before_the_bound_and_keeps_accepting_when_full(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox(tmp_path / "outbox.db", max_events=10)
    with caplog.at_level(logging.WARNING, logger="edge_agent.outbox"):
        outbox.append([ringing("a", n) for n in range(1, 8)])
        assert not caplog.records
        outbox.append([ringing("a", 8)])
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "80% full" in caplog.records[0].getMessage()
        outbox.append([ringing("a", n) for n in range(9, 13)])
    assert caplog.records[-1].levelname == "ERROR" and "OUTBOX FULL" in caplog.records[-1].getMessage()
    assert outbox.depth == 12  # nothing dropped
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge_agent.outbox"):
        Outbox(tmp_path / "outbox.db", max_events=10)  # a full outbox says so at start-up too
    assert "OUTBOX FULL" in caplog.text


def test_rejected_events_are_set_aside_not_lost(outbox: Outbox) -> None:
    outbox.append([ringing("a", 1), ringing("a", 2)])
    outbox.reject(1, "too large")
    assert [e.seq for e in outbox.pending()] == [2]
    assert outbox.stats().rejected == 1


def test_a_command_id_is_claimed_once_and_its_result_kept(outbox: Outbox) -> None:
    assert outbox.begin_command("c1") is None
    again = outbox.begin_command("c1")
    assert again is not None and again.state == "running" and again.result is None
    result = CommandResult(command_id="c1", ok=True, code="answered")
    outbox.finish_command(result)
    done = outbox.begin_command("c1")
    assert done is not None and done.state == "done" and done.result == result
    assert outbox.undelivered_results() == [result]
    outbox.mark_delivered(["c1"])
    assert outbox.undelivered_results() == []


def test_commands_interrupted_by_a_crash_are_never_rerun(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.begin_command("c1")
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.db")
    [result] = reopened.recover_interrupted()
    assert (result.command_id, result.ok, result.code) == ("c1", False, "unknown")
    record = reopened.begin_command("c1")
    assert record is not None and record.state == "done"


def test_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutboxError, match="cannot open the outbox"):
        Outbox(blocker / "outbox.db")


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from edge_agent.outbox import Outbox
    from wire_protocol.call_events import CallRinging

    outbox = Outbox(sys.argv[1])
    at = datetime(2026, 1, 1, tzinfo=UTC)
    n = 0
    while True:
        batch = [CallRinging(call_id=f"c{n}", seq=k, at=at, extension="101") for k in range(1, 4)]
        stored = outbox.append(batch)
        n += 1
        print(stored[-1].seq, flush=True)
    """
)


def test_kill_9_mid_write_loses_no_committed_event_and_leaves_a_sound_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    committed = 0
    for line in writer.stdout:
        committed = int(line)
        if committed >= 150:
            break
    writer.send_signal(signal.SIGKILL)  # mid-stream: the writer is inside its next transaction or about to be
    writer.wait(10)
    writer.stdout.close()
    reopened = Outbox(path)
    seqs = [e.seq for e in reopened.pending(limit=10**6)]
    assert seqs[:committed] == list(range(1, committed + 1))  # every acknowledged commit is there
    assert seqs == list(range(1, len(seqs) + 1))  # and no half transaction: whole batches of 3 only
    assert len(seqs) % 3 == 0
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
