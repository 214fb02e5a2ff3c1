from pathlib import Path

import pytest

from edge_agent.recordings.paths import local_path
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
