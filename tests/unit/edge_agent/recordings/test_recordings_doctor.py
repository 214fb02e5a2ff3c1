from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.doctor import check_recordings
from edge_agent.recordings.queue import RecordingQueue

BASE = {"EDGE_AMI_USER": "edge", "EDGE_AMI_SECRET": "s"}


def test_the_monitor_directory_through_the_root_and_the_converter(tmp_path: Path) -> None:
    (tmp_path / "rootfs/var/spool/asterisk/monitor").mkdir(parents=True)
    config = load_config(BASE | {"EDGE_RECORDINGS_ROOT": str(tmp_path / "rootfs"), "EDGE_RECORDINGS_CONVERTER": "none"})
    where, mp3 = check_recordings(config)
    assert where.status == "ok" and str(tmp_path / "rootfs/var/spool/asterisk/monitor") in where.detail
    assert mp3.status == "ok" and "WAV" in mp3.detail


def test_an_unseen_directory_and_no_converter_are_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    config = load_config(BASE | {"EDGE_RECORDINGS_ROOT": str(tmp_path / "nowhere")})
    where, mp3 = check_recordings(config)
    assert where.status == "warn" and "EDGE_RECORDINGS_ROOT" in where.detail
    assert mp3.status == "warn" and "apt install lame" in mp3.detail


def test_the_queue_is_counted(tmp_path: Path) -> None:
    queue = RecordingQueue(tmp_path / "outbox.db")
    queue.add("pbx-1.1", "/r.wav", 1, 100.0)
    queue.close()
    config = load_config(BASE | {"EDGE_DATA_DIR": str(tmp_path)})
    assert check_recordings(config)[-1].detail == "1 waiting"


def test_off_is_a_skip() -> None:
    (check,) = check_recordings(load_config(BASE | {"EDGE_RECORDINGS": "false"}))
    assert check.status == "skip"
