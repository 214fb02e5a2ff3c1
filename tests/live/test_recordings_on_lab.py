"""Real MixMonitor files from the Asterisk 22 lab, all the way into Bitrix24: `edge-agent run` (in process) finds each
call's recording through the chroot (``EDGE_RECORDINGS_ROOT``), waits for MixMonitor to finish it, uploads it to
cloud-local's moto S3, and the CRM pipeline attaches it to the emulator's call. The files on the lab's disk are
the judge of what arrived."""

from __future__ import annotations

import hashlib
import shutil
import wave
from pathlib import Path
from typing import Any

import pytest

from cloud.calls.store import list_calls
from cloud.recordings.store import get_recording
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.pbx_lab import scenarios
from sandbox.pbx_lab.live import LiveLab
from sandbox.portal_stack import portal_stack, until

pytestmark = [pytest.mark.live, pytest.mark.asyncio(loop_scope="session")]

SCENARIOS = ["inbound_direct_answered", "inbound_queue_answered", "blind_transfer", "outbound_answered"]


async def test_lab_recordings_are_attached_to_their_calls_once(pbx_lab: LiveLab, tmp_path: Path) -> None:
    edge = pbx_lab.edge
    login = AmiLogin(edge.host, edge.port, edge.username, edge.secret)
    rootfs = pbx_lab.paths.rootfs
    env = {"EDGE_RECORDINGS_ROOT": str(rootfs)}
    async with portal_stack(table_prefix="live-rec-") as stack:
        try:
            async with running_agent(
                login, stack.cloud.ws_url, await stack.agent_token("lab PBX"), tmp_path, extra_env=env
            ) as agent:
                made: dict[str, dict[str, Any]] = {}
                for name in SCENARIOS:
                    (expected,) = await scenarios.SCENARIOS[name](pbx_lab.scenario_lab)
                    made[name] = dict(expected)
                call_ids = {e["call_id"] for e in made.values()}

                def attached() -> bool:
                    return all(stack.registrations(c) and stack.registrations(c)[-1].record for c in call_ids)

                assert await until(lambda: attached() and stack.crm_done(call_ids), timeout=120)
                uploaded = agent.uploader.uploaded if agent.uploader else 0
        finally:
            await pbx_lab.world.hangup_all()
        summaries = {c.call_id: c.summary for c in list_calls(stack.rt, stack.tenant) if c.summary}
        items = {c: get_recording(stack.rt, stack.tenant, stack.calls_agent(c), c) for c in call_ids}
        records = {c: stack.registrations(c)[-1].record for c in call_ids}
        legs = {c: stack.registrations(c) for c in call_ids}
        files = len(stack.portal.files)

    assert uploaded == len(call_ids) and files == len(call_ids)  # once each
    for call_id in call_ids:
        summary, item, record = summaries[call_id], items[call_id], records[call_id]
        assert summary is not None and summary.recording is not None
        on_disk = rootfs / summary.recording.lstrip("/")
        assert on_disk.exists(), f"MixMonitor's file for {call_id} is not at {on_disk}"
        assert item is not None and item.state == "uploaded" and record is not None
        assert hashlib.sha256(record.content).hexdigest() == item.sha256
        assert all(leg.record is None for leg in legs[call_id][:-1])  # the whole call, on its last leg
        if item.format == "wav":  # no converter on the lab host: the very file MixMonitor wrote
            assert record.content == on_disk.read_bytes()
            with wave.open(str(on_disk)) as recorded:
                assert recorded.getnframes() > 0
        else:
            assert shutil.which("lame") or shutil.which("ffmpeg")
            assert record.content[:3] == b"ID3" or (record.content[0] == 0xFF and record.content[1] & 0xE0 == 0xE0)
            assert 0 < len(record.content) < on_disk.stat().st_size
