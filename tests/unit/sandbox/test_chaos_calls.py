"""The fault suite's calls: a recorded lab call replayed on another day is filed where a PBX files it that day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from edge_agent.recordings.paths import cdr_candidates
from edge_agent.recordings.settings import RecordingsSettings
from sandbox.chaos.calls import make_call


def test_a_replayed_calls_recording_is_filed_under_the_day_it_happens_and_found_from_its_cdr_row() -> None:
    started = datetime(2031, 3, 4, 23, 59, 50, tzinfo=UTC)  # far from the day the lab recorded it, near midnight
    call = make_call("inbound_direct_answered", 1, "cdr", started.timestamp())
    assert call.recording is not None
    assert "/2031/03/04/" in call.recording and "-20310304-2359" in PurePosixPath(call.recording).name
    (row,) = {row["recordingfile"] for row in call.cdr_rows}
    assert row == PurePosixPath(call.recording).name
    # the agent's rule for a CDR's bare file name (FreePBX's layout) finds the file the fake PBX wrote
    found = cdr_candidates(row, started, started + timedelta(seconds=30), UTC, RecordingsSettings())
    assert call.recording in found.candidates
    # the AMI side names the same file (a live call's MixMonitor path)
    assert any(call.recording in value for message in call.messages for value in message.values())
