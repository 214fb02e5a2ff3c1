"""The uploader on a real outbox file and real files on disk; S3 is an ``httpx`` transport that reads the
streamed body (the real bucket is in the integration test)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import sqlite3
import tracemalloc
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
import pytest

from edge_agent.outbox import Outbox
from edge_agent.recordings.queue import RecordingQueue
from edge_agent.recordings.settings import RecordingsSettings
from edge_agent.recordings.uploader import RecordingUploader
from sandbox.unavailable import unavailable
from wire_protocol.call_events import CallEnded, CallSummary
from wire_protocol.messages import RecordingAck, RecordingReady, RecordingResult, UploadRecording

AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
PBX_DIR = "/var/spool/asterisk/monitor/2026/11/26"
URL = "https://bucket.s3.test/portal/ag/pbx-1.1/recording?X-Amz-Signature=abc"


def write_wav(path: Path, seconds: float = 1.0) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes((n * 7) % 256 for n in range(int(16000 * seconds))))
    return path.read_bytes()


@dataclass
class Bucket(httpx.AsyncBaseTransport):
    """What S3 received: one entry per PUT (headers, body; only its size with ``keep=False``), read chunk by
    chunk as a server would (``httpx.MockTransport`` would read the whole body first); ``status`` answers."""

    puts: list[tuple[httpx.Headers, bytes]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    status: int = 200
    keep: bool = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = bytearray()
        size = 0
        assert isinstance(request.stream, httpx.AsyncByteStream)
        async for chunk in request.stream:
            size += len(chunk)
            if self.keep:
                body += chunk
        self.puts.append((request.headers, bytes(body)))
        self.sizes.append(size)
        if self.status != 200:
            return httpx.Response(self.status, text="<Error><Code>AccessDenied</Code></Error>")
        return httpx.Response(200)


@dataclass
class Rig:
    root: Path
    outbox: Outbox
    queue: RecordingQueue
    bucket: Bucket
    sent: list[RecordingReady | RecordingResult]
    clock: list[float]
    online: list[bool]
    uploader: RecordingUploader

    def end_call(self, call_id: str = "pbx-1.1", name: str = "in-1.wav", acked: bool = True) -> None:
        summary = CallSummary(
            call_id=call_id, direction="inbound", external_number="79261234567", line="74951234567",
            caller_extension=None, rang=["101"], answered_by="101", transfers=[], final_extension="101",
            result="answered", started_at=AT, answered_at=AT, ended_at=AT, talk_seconds=3,
            recording=f"{PBX_DIR}/{name}", command_id=None,
        )  # fmt: skip
        (stored,) = self.outbox.append([CallEnded(call_id=call_id, seq=9, at=AT, summary=summary)])
        assert isinstance(stored.event, CallEnded)
        self.uploader.call_ended(stored.event, stored.seq)
        if acked:
            self.outbox.ack(stored.seq)

    def file(self, name: str = "in-1.wav") -> Path:
        return self.root / "rootfs" / PBX_DIR.lstrip("/") / name

    def later(self, seconds: float) -> None:
        self.clock[0] += seconds

    async def settle(self) -> None:
        """Steps until the file is seen complete (``stable_seconds`` = 2), then prepared and hashed."""
        for _ in range(3):
            await self.uploader.step()
            self.later(1.5)
        await self.uploader.drain()

    async def step(self) -> None:
        await self.uploader.step()
        await self.uploader.drain()

    def last(self) -> RecordingReady | RecordingResult:
        return self.sent[-1]


def ready(body: bytes, fmt: Literal["wav", "mp3"] = "wav", size: int | None = None) -> RecordingReady:
    """What the agent asks with: the file's size, the uploaded file's SHA-256 and format."""
    sha256 = hashlib.sha256(body).hexdigest()
    return RecordingReady(call_id="pbx-1.1", size=len(body) if size is None else size, sha256=sha256, format=fmt)


def make_rig(tmp_path: Path, wanted: Literal["wav", "mp3"] = "wav", **settings: object) -> Rig:
    clock = [1_000_000.0]
    bucket = Bucket()
    sent: list[RecordingReady | RecordingResult] = []
    online = [True]
    outbox = Outbox(tmp_path / "outbox.db", clock=lambda: clock[0])
    queue = RecordingQueue(tmp_path / "outbox.db")
    config = RecordingsSettings.model_validate({"root": tmp_path / "rootfs", "converter": "none", **settings})

    def send(message: RecordingReady | RecordingResult) -> bool:
        if online[0]:
            sent.append(message)
        return online[0]

    uploader = RecordingUploader(
        queue,
        config,
        tmp_path / "work",
        send,
        http_factory=lambda: httpx.AsyncClient(transport=bucket),
        clock=lambda: clock[0],
    )
    uploader.wanted = wanted  # as the cloud said for an earlier recording
    return Rig(tmp_path, outbox, queue, bucket, sent, clock, online, uploader)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = make_rig(tmp_path)
    yield made
    made.queue.close()
    made.outbox.close()


def signed(rig: Rig) -> dict[str, str]:
    """The header the cloud signs into the URL: the SHA-256 the agent announced, in base64."""
    asked = [m for m in rig.sent if isinstance(m, RecordingReady)][-1]
    assert asked.sha256 is not None
    return {"x-amz-checksum-sha256": base64.b64encode(bytes.fromhex(asked.sha256)).decode()}


async def upload(rig: Rig, fmt: Literal["wav", "mp3"] = "wav", url: str = URL) -> RecordingResult:
    order = UploadRecording(
        call_id="pbx-1.1", url=url, headers=signed(rig), key="portal/ag/pbx-1.1/recording", format=fmt
    )
    rig.uploader.on_message(order)
    await rig.uploader.drain()
    result = rig.last()
    assert isinstance(result, RecordingResult)
    return result


async def test_a_finished_recording_is_asked_for_uploaded_streamed_and_reported_once(rig: Rig) -> None:
    body = write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    assert rig.sent == [ready(body)]
    await rig.step()
    assert len(rig.sent) == 1  # asked once; again only after 30 s without an answer
    result = await upload(rig)
    (headers, received) = rig.bucket.puts[0]
    assert received == body and headers["content-length"] == str(len(body))
    assert headers["x-amz-checksum-sha256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert headers["content-type"] == "audio/wav" and "transfer-encoding" not in headers
    assert (result.ok, result.format, result.size, result.key) == (
        True,
        "wav",
        len(body),
        "portal/ag/pbx-1.1/recording",
    )
    assert result.sha256 == hashlib.sha256(body).hexdigest()
    rig.later(31)
    await rig.uploader.step()
    assert rig.sent[-2:] == [result, result]  # resent until acknowledged
    rig.uploader.on_message(RecordingAck(call_id="pbx-1.1"))
    assert rig.queue.rows() == []
    rig.later(60)
    await rig.uploader.step()
    assert len(rig.bucket.puts) == 1 and rig.sent.count(result) == 2


async def test_nothing_is_asked_before_the_cloud_holds_the_call(rig: Rig) -> None:
    write_wav(rig.file())
    rig.end_call(acked=False)
    await rig.settle()
    assert rig.sent == []
    rig.outbox.ack(rig.outbox.last_seq)
    await rig.step()
    assert [m.type for m in rig.sent] == ["recording_ready"]


async def test_a_file_still_growing_after_hangup_is_not_taken_early(rig: Rig) -> None:
    path = rig.file()
    write_wav(path, seconds=0.5)
    rig.end_call()
    await rig.uploader.step()
    rig.later(1.5)
    with path.open("ab") as stream:  # MixMonitor's last buffer
        stream.write(b"\0" * 4000)
    await rig.uploader.step()
    rig.later(1.5)
    await rig.uploader.step()
    assert rig.sent == []  # changed 1.5 s ago
    rig.later(1.0)
    await rig.step()
    assert rig.sent == [ready(path.read_bytes())]


async def test_a_missing_file_is_reported_once_and_never_retried(rig: Rig) -> None:
    rig.end_call()
    await rig.uploader.step()
    assert rig.sent == []
    rig.later(61)
    await rig.uploader.step()
    (result,) = rig.sent
    assert isinstance(result, RecordingResult) and (result.ok, result.error) == (False, "missing")
    assert str(rig.file()) in result.note
    rig.uploader.on_message(RecordingAck(call_id="pbx-1.1"))
    rig.later(600)
    await rig.uploader.step()
    assert len(rig.sent) == 1 and rig.queue.rows() == []


async def test_a_file_deleted_before_its_upload_is_reported_missing(rig: Rig) -> None:
    write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    rig.file().unlink()
    result = await upload(rig)
    assert (result.ok, result.error) == (False, "missing") and rig.bucket.puts == []


async def test_failed_uploads_back_off_with_a_fresh_url_then_give_up(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, max_attempts=3)
    write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    rig.bucket.status = 403  # an expired URL, say
    rig.uploader.on_message(UploadRecording(call_id="pbx-1.1", url=URL, headers=signed(rig), key="k", format="wav"))
    await rig.uploader.drain()
    (row,) = rig.queue.rows()
    assert (row.state, row.attempts, row.next_at - rig.clock[0]) == ("ready", 1, 5.0)
    asked = len(rig.sent)
    await rig.uploader.step()
    assert len(rig.sent) == asked  # backing off
    rig.later(5)
    await rig.step()
    assert rig.last() == ready(rig.file().read_bytes())  # hashed again, a new URL
    rig.uploader.on_message(UploadRecording(call_id="pbx-1.1", url=URL, headers=signed(rig), key="k", format="wav"))
    await rig.uploader.drain()
    rig.later(10)
    await rig.step()
    rig.uploader.on_message(UploadRecording(call_id="pbx-1.1", url=URL, headers=signed(rig), key="k", format="wav"))
    await rig.uploader.drain()
    result = rig.last()
    assert isinstance(result, RecordingResult) and (result.ok, result.error) == (False, "upload_failed")
    assert "3 attempts" in result.note and "403 (AccessDenied)" in result.note and "Signature" not in result.note
    assert len(rig.bucket.puts) == 3


async def test_an_upload_cut_by_a_restart_starts_again_with_a_new_url(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    body = write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    rig.queue.update("pbx-1.1", rig.clock[0], state="uploading")  # the process died mid-PUT
    rig.queue.close()
    rig.outbox.close()
    again = make_rig(tmp_path)
    again.clock[0] = rig.clock[0] + 5
    assert again.queue.recover(again.clock[0]) == 1
    await again.step()
    assert again.sent == [ready(body)]  # the hash survived the restart
    result = await upload(again)
    assert result.ok and again.bucket.puts[0][1] == body
    again.queue.close()
    again.outbox.close()


async def test_the_cloud_declining_forgets_it_and_retry_backs_off(rig: Rig) -> None:
    write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    rig.uploader.on_message(UploadRecording(call_id="pbx-1.1", reason="not stored yet", retry=True))
    (row,) = rig.queue.rows()
    assert row.attempts == 1 and row.next_at > rig.clock[0]
    rig.uploader.on_message(UploadRecording(call_id="pbx-1.1", reason="disabled"))
    assert rig.queue.rows() == []


async def test_offline_the_question_waits_for_the_link(rig: Rig) -> None:
    write_wav(rig.file())
    rig.end_call()
    rig.online[0] = False
    await rig.settle()
    rig.online[0] = True
    await rig.step()
    assert [m.type for m in rig.sent] == ["recording_ready"]


async def test_a_plain_http_url_is_refused_unless_the_cloud_is_local(rig: Rig) -> None:
    write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    rig.uploader.on_message(UploadRecording(call_id="pbx-1.1", url="http://bucket.test/x", key="k", format="wav"))
    await rig.uploader.drain()
    assert rig.bucket.puts == [] and rig.queue.rows()[0].attempts == 1


async def test_mp3_without_a_converter_uploads_the_wav_and_says_so(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, wanted="mp3")
    body = write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    result = await upload(rig, fmt="mp3")
    assert (result.ok, result.format) == (True, "wav") and "no lame or ffmpeg" in result.note
    assert rig.bucket.puts[0][1] == body


async def test_a_failing_converter_falls_back_to_wav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "lame"
    broken.write_text("#!/bin/sh\necho 'lame: unsupported data format' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    rig = make_rig(tmp_path, wanted="mp3", converter="lame")
    write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    result = await upload(rig, fmt="mp3")
    assert (result.ok, result.format) == (True, "wav") and "unsupported data format" in result.note


async def test_mp3_with_debians_lame(tmp_path: Path) -> None:
    if shutil.which("lame") is None:
        unavailable("Debian's lame is not installed (apt-get install lame)")
    rig = make_rig(tmp_path, wanted="mp3", converter="lame")
    body = write_wav(rig.file(), seconds=3)
    rig.end_call()
    await rig.settle()
    result = await upload(rig, fmt="mp3")
    (headers, mp3) = rig.bucket.puts[0]
    assert (result.ok, result.format, result.note) == (True, "mp3", "")
    frame_sync = mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0  # (8 kHz audio gives MPEG 2.5 frames)
    assert headers["content-type"] == "audio/mpeg" and (mp3[:3] == b"ID3" or frame_sync)
    assert len(mp3) < len(body) and list((tmp_path / "work").iterdir()) == []  # the conversion is cleaned up


async def test_a_large_file_streams_in_chunks_not_into_memory(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    path = rig.file()
    path.parent.mkdir(parents=True)
    with path.open("wb") as stream:
        stream.truncate(64 * 1024 * 1024)
    rig.end_call()
    await rig.settle()
    rig.bucket.keep = False
    tracemalloc.start()
    try:
        rig.uploader.on_message(UploadRecording(call_id="pbx-1.1", url=URL, key="k", format="wav"))
        await rig.uploader.drain()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rig.bucket.sizes == [64 * 1024 * 1024]
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes while uploading 64 MB"


# -- integrity: the SHA-256 announced before the upload ---------------------------------------------------------


async def test_a_file_changed_after_it_was_hashed_is_hashed_again_not_reported(rig: Rig) -> None:
    write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    headers = signed(rig)
    with rig.file().open("ab") as stream:
        stream.write(b"\0" * 10)  # the PUT sends what the disk has now; the size is the old one
    rig.uploader.on_message(UploadRecording(call_id="pbx-1.1", url=URL, headers=headers, key="k", format="wav"))
    await rig.uploader.drain()
    (row,) = rig.queue.rows()
    assert (row.state, row.attempts, row.prepared) == ("ready", 1, None)
    assert not any(isinstance(m, RecordingResult) for m in rig.sent)
    rig.later(5)
    await rig.step()
    assert rig.last() == ready(rig.file().read_bytes(), size=row.size)  # the new SHA-256


async def test_the_cloud_refusing_the_checksum_means_upload_again_then_give_up(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, max_attempts=2)
    body = write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    first = await upload(rig)
    assert first.ok and first.sha256 == hashlib.sha256(body).hexdigest()
    rig.uploader.on_message(RecordingAck(call_id="pbx-1.1", retry=True, reason="the object's SHA-256 differs"))
    (row,) = rig.queue.rows()
    assert (row.state, row.attempts, row.result) == ("ready", 1, None)  # not forgotten: uploaded again
    rig.later(5)
    await rig.step()
    assert rig.last() == ready(body)
    second = await upload(rig)
    assert second.ok and len(rig.bucket.puts) == 2
    rig.uploader.on_message(RecordingAck(call_id="pbx-1.1", retry=True, reason="again"))
    failed = rig.last()
    assert isinstance(failed, RecordingResult) and (failed.ok, failed.error) == (False, "upload_failed")
    assert "could not verify" in failed.note
    rig.uploader.on_message(RecordingAck(call_id="pbx-1.1", retry=True))  # a failure is never retried
    rig.uploader.on_message(RecordingAck(call_id="pbx-1.1"))
    assert rig.queue.rows() == []


async def test_another_format_than_prepared_is_prepared_and_asked_for_again(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, wanted="mp3")  # no converter: the WAV with a note
    body = write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    assert rig.sent == [ready(body)]
    rig.uploader.on_message(UploadRecording(call_id="pbx-1.1", url=URL, headers=signed(rig), key="k", format="wav"))
    await rig.uploader.drain()
    assert rig.bucket.puts == [] and rig.uploader.wanted == "wav"
    assert rig.sent == [ready(body), ready(body)]  # asked again at once, for a file prepared as wav
    result = await upload(rig)
    assert result.ok and result.note == ""  # no "MP3 wanted" note any more


async def test_a_url_signed_for_another_checksum_is_not_used(rig: Rig) -> None:
    write_wav(rig.file())
    rig.end_call()
    await rig.settle()
    stale = {"x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(b"older").digest()).decode()}
    rig.uploader.on_message(UploadRecording(call_id="pbx-1.1", url=URL, headers=stale, key="k", format="wav"))
    await rig.uploader.drain()
    assert rig.bucket.puts == [] and rig.queue.rows()[0].attempts == 1


def test_a_queue_file_from_before_hashing_gains_the_column(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "outbox.db")
    db.execute(
        "CREATE TABLE recordings (call_id TEXT PRIMARY KEY, pbx_path TEXT NOT NULL, event_seq INTEGER NOT NULL, "
        "ended_at REAL NOT NULL, state TEXT NOT NULL, size INTEGER, mtime REAL, stable_since REAL, "
        "attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0, result TEXT, updated_at REAL NOT NULL)"
    )
    db.execute("INSERT INTO recordings (call_id, pbx_path, event_seq, ended_at, state, updated_at) "
               "VALUES ('pbx-1.1', '/x.wav', 3, 1.0, 'ready', 1.0)")  # fmt: skip
    db.commit()
    db.close()
    queue = RecordingQueue(tmp_path / "outbox.db")
    try:
        (row,) = queue.rows()
        assert (row.call_id, row.state, row.prepared) == ("pbx-1.1", "ready", None)
    finally:
        queue.close()
