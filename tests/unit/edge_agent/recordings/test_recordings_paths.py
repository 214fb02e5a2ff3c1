from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge_agent.recordings.paths import CdrRecording, cdr_candidates, local_path
from edge_agent.recordings.settings import RecordingsSettings

LAB = "/var/spool/asterisk/monitor/2026/11/26/in-74951234567-79261234567-20261126-095150-pbx-1795686710.98.wav"


def test_as_is_without_settings() -> None:
    assert local_path(LAB, RecordingsSettings()) == Path(LAB)


def test_a_chroot_root_is_prepended() -> None:
    settings = RecordingsSettings(root=Path("/var/tmp/pbxlink-lab/rootfs/"))
    assert local_path(LAB, settings) == Path("/var/tmp/pbxlink-lab/rootfs" + LAB)


def test_the_longest_prefix_wins_and_beats_the_root() -> None:
    settings = RecordingsSettings(
        root=Path("/chroot"),
        path_prefix_map={"/var/spool/asterisk": "/mnt/spool", "/var/spool/asterisk/monitor/": "/mnt/monitor"},
    )
    assert local_path(LAB, settings) == Path("/mnt/monitor/2026/11/26/" + LAB.rsplit("/", 1)[1])
    assert local_path("/var/spool/asterisk/voicemail/x.wav", settings) == Path("/mnt/spool/voicemail/x.wav")
    assert local_path("/var/spool/asterisk-other/x.wav", settings) == Path("/chroot/var/spool/asterisk-other/x.wav")


def test_a_bare_name_is_in_asterisks_monitor_directory() -> None:
    settings = RecordingsSettings(path_prefix_map={"/var/spool/asterisk/monitor": "/mnt/monitor"})
    assert local_path("q-100-1.wav", settings) == Path("/mnt/monitor/q-100-1.wav")


@pytest.mark.parametrize("name", ["", "/var/spool/asterisk/monitor/../../../etc/shadow", "../x.wav"])
def test_names_that_climb_out_or_say_nothing_are_refused(name: str) -> None:
    assert local_path(name, RecordingsSettings(root=Path("/chroot"))) is None


def test_map_entries_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        RecordingsSettings(path_prefix_map={"spool": "/mnt"})


# -- a CDR's recording value (FreePBX's recordingfile, a userfield) -------------------------------------------

MONITOR = "/var/spool/asterisk/monitor"
MOSCOW = ZoneInfo("Europe/Moscow")
START = datetime(2026, 11, 26, 6, 51, 50, tzinfo=UTC)  # 09:51:50 in Moscow


def candidates(value: str, started: datetime = START, ended: datetime | None = None) -> CdrRecording:
    return cdr_candidates(value, started, ended or started + timedelta(minutes=2), MOSCOW, RecordingsSettings())


def test_a_bare_name_is_looked_for_in_freepbxs_date_folder_then_the_directory() -> None:
    name = LAB.rsplit("/", 1)[1]
    assert candidates(name) == CdrRecording((f"{MONITOR}/2026/11/26/{name}", f"{MONITOR}/{name}"))


def test_the_date_folder_is_the_calls_local_date_in_the_cdr_zone() -> None:
    late = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)  # 01:30 on the 26th in Moscow, still the 25th in UTC
    assert candidates("x.wav", late).candidates[0] == f"{MONITOR}/2026/11/26/x.wav"


def test_a_call_over_midnight_looks_in_both_days() -> None:
    started = datetime(2026, 11, 26, 20, 55, tzinfo=UTC)  # 23:55 in Moscow
    found = candidates("x.wav", started, started + timedelta(minutes=10))
    assert found.candidates == (f"{MONITOR}/2026/11/26/x.wav", f"{MONITOR}/2026/11/27/x.wav", f"{MONITOR}/x.wav")


def test_paths_inside_the_directory_are_taken_as_written() -> None:
    assert candidates(LAB) == CdrRecording((LAB,))
    assert candidates("2026/11/26/x.wav") == CdrRecording((f"{MONITOR}/2026/11/26/x.wav",))
    assert candidates("  ") == CdrRecording()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("/etc/shadow", "outside the recordings directory"),
        ("/var/spool/asterisk/monitor-other/x.wav", "outside the recordings directory"),
        (MONITOR, "outside the recordings directory"),
        ("/var/spool/asterisk/monitor/../../../etc/shadow", "'..'"),
        ("../../etc/passwd", "'..'"),
        ("2026/../../x.wav", "'..'"),
        ("x.wav\nINJECTED", "control characters"),
        ("x" * 2000 + ".wav", "characters long"),
    ],
)
def test_cdr_values_that_leave_the_recordings_directory_are_refused(value: str, why: str) -> None:
    found = candidates(value)
    assert found.candidates == () and found.refused is not None and why in found.refused
