"""Click-to-call on a real Asterisk 22: a click on a number in the Bitrix24 emulator reaches cloud-local as
ONEXTERNALCALLSTART, becomes an ``originate`` for `edge-agent run` (in process) on the lab PBX, which rings the
user's phone (101), then the client; the click's CALL_ID is finished once, with the right status and duration.

The lab's phones and carrier are the `world` Asterisk: `set_behavior` decides whether 101 answers and how long
the client talks. Nothing here is timed: the test waits for the emulator to show the call finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from cloud.agents.commands import get_command
from cloud.calls.store import list_calls
from cloud.crm.pipeline import crm_status
from cloud.crm.settings import ClickToCallSettings, CrmSettings, save_settings
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.pbx_lab import scenarios
from sandbox.pbx_lab.live import LiveLab
from sandbox.portal_stack import ANNA, PortalStack, portal_stack, until
from wire_protocol.messages import OriginateSettings

pytestmark = [pytest.mark.live, pytest.mark.asyncio(loop_scope="session")]

#: How the lab's PBX places a click (``[pbxlink-originate]`` in sandbox/pbx_lab/config/pbx/extensions.conf).
ORIGINATE = OriginateSettings(context="pbxlink-originate", channel_template="PJSIP/{extension}", ring_seconds=15)


@asynccontextmanager
async def portal_on_lab(pbx_lab: LiveLab, tmp_path: Path) -> AsyncIterator[PortalStack]:
    """The emulator with our app installed into cloud-local, and `edge-agent run` on the lab's PBX."""
    async with portal_stack(table_prefix="live-c2c-", seed=21, sweep_interval=0.5) as stack:
        try:
            crm = CrmSettings(click_to_call=ClickToCallSettings(originate=ORIGINATE))
            await asyncio.to_thread(
                save_settings, stack.rt, stack.tenant, crm
            )  # before the agent's hello: it gets them
            edge = pbx_lab.edge
            login = AmiLogin(edge.host, edge.port, edge.username, edge.secret)
            async with running_agent(login, stack.cloud.ws_url, await stack.agent_token("lab PBX"), tmp_path):
                yield stack
        finally:
            await pbx_lab.world.hangup_all()


async def test_a_click_rings_the_user_then_the_client_and_is_finished_with_the_talk_time(
    pbx_lab: LiveLab, tmp_path: Path
) -> None:
    await pbx_lab.admin.wait_idle()
    await pbx_lab.world.set_behavior("101", "answer")
    await pbx_lab.world.set_behavior(scenarios.OUTSIDE, "answer:2")
    async with portal_on_lab(pbx_lab, tmp_path) as b24:
        call_id = await asyncio.to_thread(b24.click, ANNA, f"+{scenarios.OUTSIDE}")
        assert await until(lambda: b24.call(call_id).finished)
        call = b24.call(call_id)
        summaries = [c.summary for c in list_calls(b24.rt, b24.tenant) if c.summary is not None]
        audit = b24.portal.audit()
        registrations = len(b24.portal.calls)
    [summary] = [s for s in summaries if s.command_id == f"c2c:{call_id}"]
    assert summary.direction == "outbound" and summary.caller_extension == "101"
    assert summary.external_number == scenarios.OUTSIDE and summary.result == "answered"
    assert (call.finish_user_id, call.status_code, call.failed_reason) == (ANNA, "200", "")
    assert call.duration == summary.talk_seconds and 1 <= call.duration <= 4  # the client hung up after 2 s
    assert registrations == 1  # the click's own CALL_ID, never registered again
    assert audit["unfinished"] == [] and audit["open_cards"] == {} and not call.finish_errors


def both_arrived(b24: PortalStack, command_id: str) -> bool:
    """The agent's result is stored and the PBX call it made went through the CRM pipeline."""
    command = get_command(b24.rt, b24.tenant, command_id) or {}
    calls = [c for c in list_calls(b24.rt, b24.tenant) if c.summary is not None and c.command_id == command_id]
    if command.get("status") != "done" or not calls:
        return False
    status = crm_status(b24.rt, b24.tenant, calls[0].agent_id, calls[0].call_id) or {}
    return status.get("crm_status") in ("done", "skipped")


async def test_a_click_the_user_does_not_answer_is_finished_once_as_failed(pbx_lab: LiveLab, tmp_path: Path) -> None:
    """The user's phone rings out (``ring_seconds``): the agent's failed result (``no_answer``) and the call's own
    events (the PBX did ring 101, test_agent_on_lab.py shows the call) race to the cloud; whichever is first
    finishes the CALL_ID (480 with the reason, or the pipeline's 603-S), the other changes nothing."""
    await pbx_lab.admin.wait_idle()
    await pbx_lab.world.set_behavior("101", "ring")
    try:
        async with portal_on_lab(pbx_lab, tmp_path) as b24:
            call_id = await asyncio.to_thread(b24.click, ANNA, f"+{scenarios.OUTSIDE}")
            assert await until(lambda: b24.call(call_id).finished)
            assert await until(lambda: both_arrived(b24, f"c2c:{call_id}"))  # the slower one must change nothing
            call = b24.call(call_id)
            audit = b24.portal.audit()
            registrations = len(b24.portal.calls)
    finally:
        await pbx_lab.world.set_behavior("101", "answer")
    assert call.status_code in ("480", "603-S") and call.duration == 0 and call.finish_user_id == ANNA
    if call.status_code == "480":
        assert call.failed_reason == "Your phone did not answer."
    assert registrations == 1 and not call.finish_errors
    assert audit["unfinished"] == [] and audit["open_cards"] == {}
