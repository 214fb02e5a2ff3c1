import dataclasses

from edge_agent.recordings.queue import RecordingRow
from edge_agent.recordings.settings import RecordingsSettings
from edge_agent.recordings.steps import FileSeen, backoff, watch

SETTINGS = RecordingsSettings(stable_seconds=2.0, missing_after_seconds=60.0)


def row(**changes: object) -> RecordingRow:
    base = RecordingRow(call_id="c", pbx_path="/r.wav", event_seq=1, ended_at=100.0, state="waiting")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_new_file_is_watched_until_it_stops_changing() -> None:
    first = watch(row(), FileSeen(10, 1.0), 100.0, SETTINGS)
    assert (first.outcome, first.changes) == ("waiting", {"size": 10, "mtime": 1.0, "stable_since": 100.0})
    seen = row(size=10, mtime=1.0, stable_since=100.0)
    assert watch(seen, FileSeen(10, 1.0), 101.0, SETTINGS).outcome == "waiting"  # not long enough
    grew = watch(seen, FileSeen(20, 1.5), 101.5, SETTINGS)  # MixMonitor's last flush after hangup
    assert (grew.outcome, grew.changes["stable_since"]) == ("waiting", 101.5)
    settled = row(size=20, mtime=1.5, stable_since=101.5)
    assert watch(settled, FileSeen(20, 1.5), 103.5, SETTINGS).outcome == "ready"


def test_an_absent_file_is_missing_only_after_the_grace() -> None:
    assert watch(row(), None, 159.0, SETTINGS).outcome == "waiting"
    assert watch(row(), None, 160.0, SETTINGS).outcome == "missing"


def test_an_unreadable_file_is_reported_at_once() -> None:
    assert watch(row(), PermissionError(13, "Permission denied"), 100.0, SETTINGS).outcome == "unreadable"


def test_backoff_doubles_to_an_hour() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert backoff(50) == 3600.0
