"""Recordings of backfilled calls: the CDR's name resolved inside the recordings directory (FreePBX's date
folders, the lab's real rows), queued once into the same queue as the AMI's, refused names reported on the call."""

from __future__ import annotations

import io
import logging
import os
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from cdr_builders import lab_master_db, lab_rows

from edge_agent.calls.channels import ChannelRules
from edge_agent.cdr.backfill import Backfiller
from edge_agent.cdr.command import run_backfill
from edge_agent.cdr.readers import open_reader
from edge_agent.cdr.rows import row_from_db
from edge_agent.cdr.settings import CdrSettings
from edge_agent.cdr.summaries import summarize_rows
from edge_agent.config import load_config
from edge_agent.outbox import Outbox
from edge_agent.recordings.backfilled import queue_backfilled
from edge_agent.recordings.queue import RecordingQueue
from edge_agent.recordings.settings import RecordingsSettings
from edge_agent.recordings.uploader import RecordingUploader
from wire_protocol.call_events import CallEnded, CallSummary
from wire_protocol.messages import RecordingReady, RecordingResult

MONITOR = "/var/spool/asterisk/monitor"
AT = datetime(2026, 11, 26, 9, 51, 50, tzinfo=UTC)
SINCE = datetime(2026, 11, 26, 9, 50, tzinfo=UTC)
UNTIL = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
#: The lab's calls whose CDR rows name a recording (FreePBX-style: a bare name in recordingfile).
RECORDED = {
    row["linkedid"]: row["recordingfile"] for rows in lab_rows().values() for row in rows if row["recordingfile"]
}


def backfilled(recording: str | None, call_id: str = "pbx-1.1") -> CallEnded:
    summary = CallSummary(
        call_id=call_id, direction="inbound", external_number="79261234567", line="74951234567",
        caller_extension=None, rang=["101"], answered_by="101", transfers=[], final_extension="101",
        result="answered", started_at=AT, answered_at=AT, ended_at=AT + timedelta(seconds=30), talk_seconds=30,
        recording=recording, command_id=None,
    )  # fmt: skip
    return CallEnded(call_id=call_id, seq=1, at=summary.ended_at, summary=summary, reason="backfilled")


def on_disk(root: Path, pbx_path: str) -> Path:
    path = root / pbx_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\1\2" * 8000)
    return path


@pytest.fixture
def queue(tmp_path: Path) -> RecordingQueue:
    return RecordingQueue(tmp_path / "outbox.db")


def settings(tmp_path: Path) -> RecordingsSettings:
    return RecordingsSettings(root=tmp_path / "rootfs", converter="none")


def test_a_bare_name_is_found_in_freepbxs_date_folder_and_queued_once(tmp_path: Path, queue: RecordingQueue) -> None:
    on_disk(tmp_path / "rootfs", f"{MONITOR}/2026/11/26/in-1.wav")
    event = backfilled("in-1.wav")
    assert queue_backfilled(queue, settings(tmp_path), event, 7, UTC, 100.0)
    (row,) = queue.rows()
    assert (row.call_id, row.pbx_path, row.event_seq, row.state) == ("pbx-1.1", f"{MONITOR}/2026/11/26/in-1.wav",
                                                                     7, "waiting")  # fmt: skip
    assert not queue_backfilled(queue, settings(tmp_path), event, 7, UTC, 101.0)  # the same call: not twice
    assert len(queue.rows()) == 1


def test_the_date_folder_follows_the_cdr_zone_and_a_plain_directory_also_works(
    tmp_path: Path, queue: RecordingQueue
) -> None:
    late = backfilled("late.wav", "pbx-2.2")
    late = late.model_copy(update={"summary": late.summary.model_copy(update={"started_at": AT.replace(hour=22)})})
    on_disk(tmp_path / "rootfs", f"{MONITOR}/2026/11/27/late.wav")  # 01:51 on the 27th in Moscow
    on_disk(tmp_path / "rootfs", f"{MONITOR}/plain.wav")  # MixMonitor(plain.wav) without FreePBX's folders
    assert queue_backfilled(queue, settings(tmp_path), late, 1, ZoneInfo("Europe/Moscow"), 100.0)
    assert queue_backfilled(queue, settings(tmp_path), backfilled("plain.wav"), 2, UTC, 100.0)
    assert {r.call_id: r.pbx_path for r in queue.rows()} == {
        "pbx-2.2": f"{MONITOR}/2026/11/27/late.wav",
        "pbx-1.1": f"{MONITOR}/plain.wav",
    }


def test_a_file_not_there_is_queued_at_its_likeliest_place_and_reported_missing_later(
    tmp_path: Path, queue: RecordingQueue
) -> None:
    assert queue_backfilled(queue, settings(tmp_path), backfilled("gone.wav"), 1, UTC, 100.0)
    assert queue.rows()[0].pbx_path == f"{MONITOR}/2026/11/26/gone.wav"


@pytest.mark.parametrize("value", ["/etc/shadow", "../../../etc/passwd", f"{MONITOR}/../../../etc/shadow"])
def test_a_name_leaving_the_directory_is_refused_logged_and_reported_on_the_call(
    tmp_path: Path, queue: RecordingQueue, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "edge_agent.recordings.backfilled"):
        assert not queue_backfilled(queue, settings(tmp_path), backfilled(value), 1, UTC, 100.0)
    assert "is not followed" in caplog.text
    (row,) = queue.rows()
    result = row.stored_result
    assert row.state == "reported" and result is not None and (result.ok, result.error) == (False, "refused")
    assert "recordings directory" in result.note
    assert not queue_backfilled(queue, settings(tmp_path), backfilled(value), 1, UTC, 101.0)  # reported once


def test_a_symbolic_link_out_of_the_directory_is_refused(tmp_path: Path, queue: RecordingQueue) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF")
    link = tmp_path / "rootfs" / MONITOR.lstrip("/") / "2026" / "11" / "26" / "in-1.wav"
    link.parent.mkdir(parents=True)
    os.symlink(secret, link)
    assert not queue_backfilled(queue, settings(tmp_path), backfilled("in-1.wav"), 1, UTC, 100.0)
    result = queue.rows()[0].stored_result
    assert result is not None and result.error == "refused" and "symbolic link" in result.note


def test_nothing_without_a_name_or_with_recordings_off(tmp_path: Path, queue: RecordingQueue) -> None:
    on_disk(tmp_path / "rootfs", f"{MONITOR}/x.wav")
    assert not queue_backfilled(queue, settings(tmp_path), backfilled(None), 1, UTC, 100.0)
    off = RecordingsSettings(root=tmp_path / "rootfs", enabled=False)
    assert not queue_backfilled(queue, off, backfilled("x.wav"), 1, UTC, 100.0)
    assert queue.rows() == []


# -- the backfill hands its calls to the queue -----------------------------------------------------------------


@pytest.fixture
def master_db(tmp_path: Path) -> Path:
    return lab_master_db(tmp_path / "master.db", [row for rows in lab_rows().values() for row in rows])


async def test_a_backfill_queues_each_recorded_call_once_and_the_uploader_asks_for_it(
    tmp_path: Path, master_db: Path
) -> None:
    assert len(RECORDED) >= 5
    call_id, name = sorted(RECORDED.items())[0]
    on_disk(tmp_path / "rootfs", f"{MONITOR}/2026/11/26/{name}")
    clock = [1_000_000.0]
    outbox = Outbox(tmp_path / "outbox.db", clock=lambda: clock[0])
    queue = RecordingQueue(tmp_path / "outbox.db")
    sent: list[RecordingReady | RecordingResult] = []

    def send(message: RecordingReady | RecordingResult) -> bool:
        sent.append(message)
        return True

    uploader = RecordingUploader(
        queue, settings(tmp_path), tmp_path / "work", send, http_factory=httpx.AsyncClient, clock=lambda: clock[0]
    )
    reader = open_reader(CdrSettings.model_validate({"dsn": f"sqlite://{master_db}", "timezone": "UTC"}))
    ended = lambda event, seq: uploader.call_backfilled(event, seq, UTC)  # noqa: E731 - as the agent wires it
    try:
        report = Backfiller(reader, outbox, ChannelRules, ended).run(SINCE, UNTIL)
        assert {s.call_id for s in report.sent if s.recording} == set(RECORDED)
        rows = {r.call_id: r for r in queue.rows()}
        assert set(rows) == set(RECORDED)  # every recorded call, none of the others
        assert rows[call_id].pbx_path == f"{MONITOR}/2026/11/26/{name}"
        again = Backfiller(reader, outbox, ChannelRules, ended).run(SINCE, UNTIL)
        assert again.sent == [] and len(queue.rows()) == len(RECORDED)  # a second read queues nothing
        for item in outbox.pending(limit=100):
            outbox.ack(item.seq)  # the cloud holds the calls
        for _ in range(3):
            await uploader.step()
            clock[0] += 1.5
        asked = [m for m in sent if isinstance(m, RecordingReady)]
        assert [m.call_id for m in asked] == [call_id]  # the one whose file is there; the rest wait, then missing
        clock[0] += 61
        await uploader.step()
        missing = [m for m in sent if isinstance(m, RecordingResult)]
        assert len(missing) == len(RECORDED) - 1 and all(m.error == "missing" for m in missing)
    finally:
        reader.close()
        queue.close()
        outbox.close()


def test_the_backfill_command_queues_recordings_for_the_running_agent(master_db: Path, tmp_path: Path) -> None:
    config = load_config(
        {
            "EDGE_AMI_USER": "edge",
            "EDGE_AMI_SECRET": "edge-secret",
            "EDGE_CDR_DSN": f"sqlite://{master_db}",
            "EDGE_CDR_TIMEZONE": "UTC",
            "EDGE_DATA_DIR": str(tmp_path / "data"),
            "EDGE_RECORDINGS_ROOT": str(tmp_path / "rootfs"),
        }
    )
    now = UNTIL + timedelta(hours=1)
    run_backfill(config, SINCE, UNTIL, dry_run=True, out=io.StringIO(), now=now)
    queue = RecordingQueue(tmp_path / "data" / "outbox.db")
    try:
        assert queue.rows() == []  # a dry run queues nothing
        run_backfill(config, SINCE, UNTIL, dry_run=False, out=io.StringIO(), now=now)
        assert {r.call_id for r in queue.rows()} == set(RECORDED)
        run_backfill(config, SINCE, UNTIL, dry_run=False, out=io.StringIO(), now=now)
        assert len(queue.rows()) == len(RECORDED)
    finally:
        queue.close()


def test_asterisks_own_schema_can_name_the_recording_in_userfield() -> None:
    """No recordingfile column (Asterisk's cdr): ``Set(CDR(userfield)=${MIXMONITOR_FILENAME})`` names it."""
    rows = next(rows for rows in lab_rows().values() if any(r["recordingfile"] for r in rows))
    path = f"{MONITOR}/2026/11/26/in-1.wav"

    def asterisk(row: dict[str, object], userfield: str) -> dict[str, object]:
        return {**{k: v for k, v in row.items() if k != "recordingfile"}, "userfield": userfield}

    (summary,) = summarize_rows([row_from_db(asterisk(r, path), UTC) for r in rows], ChannelRules())
    assert summary.recording == path
    (summary,) = summarize_rows([row_from_db(asterisk(r, "vip customer"), UTC) for r in rows], ChannelRules())
    assert summary.recording is None  # a userfield used for something else is no file name
