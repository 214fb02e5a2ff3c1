"""SHA-256 end to end on loopback: the agent's uploader (real files, its outbox, httpx over a real socket) and the
cloud's recording service (through ``$default``) against moto server as S3. The first upload is corrupted on the
wire (one byte flipped, same length): moto, unlike S3, does not check the signed ``x-amz-checksum-sha256``, so the
object lands, and the cloud's own check must refuse it; the agent uploads again and the object is then exact."""

from __future__ import annotations

import dataclasses
import hashlib
import wave
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cloud_builders import CID, ended, started
from licensing_builders import PUBLIC_KEYS_ENV, trial_from_now
from moto.server import ThreadedMotoServer
from pydantic import BaseModel

import cloud.app
from cloud.calls.store import record_event
from cloud.link.dispatch import handle_agent_message
from cloud.recordings.bucket import create_bucket
from cloud.recordings.store import get_recording
from cloud.runtime import Runtime
from edge_agent.outbox import Outbox
from edge_agent.recordings.queue import RecordingQueue
from edge_agent.recordings.settings import RecordingsSettings
from edge_agent.recordings.uploader import RecordingUploader
from wire_protocol.call_events import CallEnded
from wire_protocol.messages import RecordingAck, RecordingReady, RecordingResult, UploadRecording, encode

pytest_plugins = ["cloud_testkit"]
pytestmark = [pytest.mark.integration]

TENANT = "portal-a"
CALL = "pbx-1795686710.98"
PBX_PATH = f"/var/spool/asterisk/monitor/2026/11/26/in-{CALL}.wav"


@pytest.fixture
def s3_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def rt(rt: Runtime, s3_url: str) -> Iterator[Runtime]:
    """The cloud's runtime: DynamoDB in-process, S3 on moto server (pre-signed URLs point at its socket)."""
    settings = dataclasses.replace(rt.settings, license_public_keys=PUBLIC_KEYS_ENV, s3_endpoint=s3_url)
    runtime = Runtime(settings)
    cloud.app.use_runtime(runtime)
    create_bucket(runtime.s3, runtime.settings.bucket, runtime.settings.region)
    double = trial_from_now(runtime, TENANT)
    yield runtime
    double.close()


@dataclasses.dataclass
class Corrupting(httpx.AsyncBaseTransport):
    """A real HTTP transport that flips the first byte of the next ``corrupt`` PUT bodies on their way out."""

    corrupt: int = 1
    puts: int = 0
    real: httpx.AsyncHTTPTransport = dataclasses.field(default_factory=httpx.AsyncHTTPTransport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.puts += 1
            if self.corrupt:
                self.corrupt -= 1
                request = httpx.Request("PUT", request.url, headers=request.headers, content=_flipped(request))
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


async def _flipped(request: httpx.Request) -> AsyncIterator[bytes]:
    first = True
    assert isinstance(request.stream, httpx.AsyncByteStream)
    async for chunk in request.stream:
        if first and chunk:
            chunk, first = bytes([chunk[0] ^ 0xFF]) + chunk[1:], False
        yield chunk


def write_wav(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes((n * 13) % 256 for n in range(3 * 1024 * 1024)))  # > 1 MiB: several chunks
    return path.read_bytes()


async def test_a_corrupted_upload_is_refused_and_uploaded_again_then_exact(
    rt: Runtime, agent_id: str, tmp_path: Path
) -> None:
    body = write_wav(tmp_path / "rootfs" / PBX_PATH.lstrip("/"))
    end = ended(CALL, seq=2)
    end = end.model_copy(update={"summary": end.summary.model_copy(update={"recording": PBX_PATH})})
    record_event(rt, TENANT, agent_id, 1, started(CALL))
    record_event(rt, TENANT, agent_id, 2, end)  # the cloud holds the call

    clock = [datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp()]
    replies: list[BaseModel] = []
    outcomes: list[list[str]] = []

    def send(message: RecordingReady | RecordingResult) -> bool:
        outcome = handle_agent_message(rt, CID, encode(message))
        replies.extend(outcome.replies)
        outcomes.append(outcome.crm_calls)
        return True

    transport = Corrupting()
    outbox = Outbox(tmp_path / "outbox.db", clock=lambda: clock[0])
    queue = RecordingQueue(tmp_path / "outbox.db")
    settings = RecordingsSettings(root=tmp_path / "rootfs", converter="none")
    uploader = RecordingUploader(
        queue, settings, tmp_path / "work", send, allow_http=True,
        http_factory=lambda: httpx.AsyncClient(transport=transport), clock=lambda: clock[0],
    )  # fmt: skip
    uploader.wanted = "wav"
    (stored,) = outbox.append([end])
    assert isinstance(stored.event, CallEnded)
    uploader.call_ended(stored.event, stored.seq)
    outbox.ack(stored.seq)

    async def turn(seconds: float = 1.5) -> None:
        """One step of the agent, then the cloud's answers delivered back to it."""
        await uploader.step()
        await uploader.drain()
        while replies:
            reply = replies.pop(0)
            assert isinstance(reply, UploadRecording | RecordingAck)
            uploader.on_message(reply)
            await uploader.drain()
        clock[0] += seconds

    try:
        for _ in range(4):
            await turn()
        # the first upload went corrupted: refused by the cloud, deleted, the agent told to upload again
        assert transport.puts == 1
        (row,) = queue.rows()
        assert (row.state, row.attempts) == ("ready", 1) and outcomes[-1] == []
        item = get_recording(rt, TENANT, agent_id, CALL)
        assert item is not None and item.state == "requested" and "did not verify" in item.note
        await turn(5.0)  # the backoff
        for _ in range(2):
            await turn()
        assert transport.puts == 2 and queue.rows() == []
        item = get_recording(rt, TENANT, agent_id, CALL)
        assert item is not None and (item.state, item.size, item.sha256) == (
            "uploaded",
            len(body),
            hashlib.sha256(body).hexdigest(),
        )
        stored_body = rt.s3.get_object(Bucket=rt.settings.bucket, Key=item.key)["Body"].read()
        assert stored_body == body and outcomes[-1] == [CALL]  # exact, and only now the CRM may attach it
    finally:
        await transport.aclose()
        queue.close()
        outbox.close()
