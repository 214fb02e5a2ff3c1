"""Recordings on loopback, the whole way: a recorded lab call with its MixMonitor file (a real WAV written at the
mapped path) → ``edge-agent`` (waits for the file, converts, streams a ``PUT``) → cloud-local's moto S3 → the CRM
pipeline → the Bitrix24 emulator, whose call ends up with the recording attached, exactly once. Then an upload
cut by a restart, and a file that never appears."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from cloud.recordings.store import get_recording
from edge_agent.agent import Agent
from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.trace import read_trace
from sandbox.ami_server.server import FakeAmiServer, UserSpec
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.portal_stack import PortalStack, portal_stack, until
from sandbox.simulated_pbx import write_wav
from sandbox.unavailable import unavailable
from wire_protocol.call_events import CallEnded

pytestmark = [pytest.mark.integration]

TRACES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"


def recording_of(name: str) -> tuple[str, str]:
    """The trace's call id and its MixMonitor file as the PBX named it."""
    ended = [e for e in CallInterpreter().feed_many(read_trace(TRACES / f"{name}.jsonl")) if isinstance(e, CallEnded)]
    assert ended and ended[0].summary.recording is not None
    return ended[0].call_id, ended[0].summary.recording


@asynccontextmanager
async def agent_on(
    stack: PortalStack, ami: FakeAmiServer, data_dir: Path, root: Path, token: str, **env: str
) -> AsyncIterator[Agent]:
    login = AmiLogin("127.0.0.1", ami.port, "edge", "edge-secret")
    settings = {"EDGE_RECORDINGS_ROOT": str(root), "EDGE_RECORDINGS_STABLE_SECONDS": "0.5", **env}
    async with running_agent(login, stack.cloud.ws_url, token, data_dir, extra_env=settings) as agent:
        yield agent


def attached(stack: PortalStack, call_id: str) -> bytes | None:
    calls = stack.registrations(call_id)
    record = calls[-1].record if calls else None
    return record.content if record is not None else None


def queue_states(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "outbox.db") as db:
        return [state for (state,) in db.execute("SELECT state FROM recordings")]


async def test_a_lab_call_gets_its_recording_attached_once(tmp_path: Path) -> None:
    names = ["inbound_queue_answered", "attended_transfer"]
    root = tmp_path / "rootfs"
    calls = dict(recording_of(name) for name in names)
    for pbx_path in calls.values():
        write_wav(root / pbx_path.lstrip("/"), seconds=4)
    async with portal_stack(table_prefix="rec-") as stack, FakeAmiServer({"edge": UserSpec("edge-secret")}) as ami:
        token = await stack.agent_token()
        async with agent_on(stack, ami, tmp_path / "agent", root, token) as agent:
            for name in names:
                await ami.play(read_trace(TRACES / f"{name}.jsonl"), speed=None)
            assert await until(lambda: all(attached(stack, c) for c in calls) and stack.crm_done(calls), timeout=60)
            assert await until(lambda: queue_states(tmp_path / "agent") == [], timeout=30)  # results acknowledged
            uploaded = agent.uploader.uploaded if agent.uploader else 0
        items = {c: get_recording(stack.rt, stack.tenant, stack.calls_agent(c), c) for c in calls}
        objects = {c: stack.rt.s3.get_object(Bucket=stack.rt.settings.bucket, Key=i.key)["Body"].read()
                   for c, i in items.items() if i is not None}  # fmt: skip
        files = len(stack.portal.files)
        legs = {c: stack.registrations(c) for c in calls}
    assert uploaded == 2 and files == 2  # one upload and one attachRecord per call: exactly once
    for call_id, item in items.items():
        assert item is not None and item.state == "uploaded"
        assert item.key.startswith(f"{stack.tenant}/")  # tenant first
        record = legs[call_id][-1].record
        assert record is not None and record.content == objects[call_id]
        assert hashlib.sha256(record.content).hexdigest() == item.sha256  # what the agent hashed on its disk
        expected = "mp3" if shutil.which("lame") or shutil.which("ffmpeg") else "wav"
        assert item.format == expected and record.name == f"{call_id}.{expected}"
        assert all(leg.record is None for leg in legs[call_id][:-1])  # the whole call's file, on the last leg


async def test_an_upload_cut_by_a_restart_is_done_again_and_attached_once(tmp_path: Path) -> None:
    if shutil.which("lame") is None:
        unavailable("Debian's lame is not installed (apt-get install lame)")
    call_id, pbx_path = recording_of("inbound_direct_answered")
    root = tmp_path / "rootfs"
    write_wav(root / pbx_path.lstrip("/"), seconds=240)  # four minutes: lame needs a moment
    async with portal_stack(table_prefix="recr-") as stack, FakeAmiServer({"edge": UserSpec("edge-secret")}) as ami:
        token = await stack.agent_token()
        async with agent_on(stack, ami, tmp_path / "agent", root, token, EDGE_RECORDINGS_CONVERTER="lame"):
            await ami.play(read_trace(TRACES / "inbound_direct_answered.jsonl"), speed=None)
            assert await until(lambda: queue_states(tmp_path / "agent") == ["uploading"], timeout=30, interval=0.02)
        # stopped mid-upload (converting); the row says so, nothing reached Bitrix24
        assert queue_states(tmp_path / "agent") == ["uploading"] and attached(stack, call_id) is None
        async with agent_on(stack, ami, tmp_path / "agent", root, token, EDGE_RECORDINGS_CONVERTER="lame"):
            assert await until(lambda: attached(stack, call_id) is not None and stack.crm_done([call_id]), timeout=90)
            assert await until(lambda: queue_states(tmp_path / "agent") == [], timeout=30)
        item = get_recording(stack.rt, stack.tenant, stack.calls_agent(call_id), call_id)
        files = len(stack.portal.files)
    assert item is not None and (item.state, item.format) == ("uploaded", "mp3")
    assert files == 1


async def test_a_recording_that_never_appears_is_reported_and_the_call_is_still_done(tmp_path: Path) -> None:
    call_id, _ = recording_of("inbound_direct_missed")
    async with portal_stack(table_prefix="recm-") as stack, FakeAmiServer({"edge": UserSpec("edge-secret")}) as ami:
        token = await stack.agent_token()
        settings = {"EDGE_RECORDINGS_MISSING_AFTER": "1"}
        async with agent_on(stack, ami, tmp_path / "agent", tmp_path / "empty", token, **settings):
            await ami.play(read_trace(TRACES / "inbound_direct_missed.jsonl"), speed=None)

            def reported() -> bool:
                item = get_recording(stack.rt, stack.tenant, stack.calls_agent(call_id) or "-", call_id)
                return item is not None and item.state == "failed"

            assert await until(reported, timeout=30)
            assert await until(lambda: queue_states(tmp_path / "agent") == [], timeout=30)  # not retried
            assert await until(lambda: stack.crm_done([call_id]), timeout=30)
            await asyncio.sleep(1.0)
            assert queue_states(tmp_path / "agent") == []
        item = get_recording(stack.rt, stack.tenant, stack.calls_agent(call_id), call_id)
        call = stack.registrations(call_id)
    assert item is not None and item.error == "missing" and "/empty/" in item.note
    assert call and call[-1].finished and call[-1].record is None
