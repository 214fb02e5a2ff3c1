"""Click-to-call on a real Asterisk 22: a click on a number in the Bitrix24 emulator reaches cloud-local as
ONEXTERNALCALLSTART, becomes an ``originate`` for `edge-agent run` (in process) on the lab PBX, which rings the
user's phone (101), then the client; the click's CALL_ID is finished once, with the right status and duration.

The lab's phones and carrier are the `world` Asterisk: `set_behavior` decides whether 101 answers and how long
the client talks. Nothing here is timed: the test waits for the emulator to show the call finished.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud.agents.commands import get_command
from cloud.calls.store import list_calls
from cloud.crm.pipeline import crm_status
from cloud.crm.settings import ClickToCallSettings, CrmSettings, save_settings
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.tenants import store
from sandbox.bitrix24 import App, Emulator, EmulatorServer, User
from sandbox.bitrix24.portal import Call, Portal
from sandbox.bitrix24.testing import post_form
from sandbox.cloud_local import CloudLocal, CloudLocalConfig, CrmSweeper
from sandbox.cloud_local.agents import AmiLogin, issue_token, running_agent
from sandbox.cloud_local.license import LicenseService
from sandbox.pbx_lab import scenarios
from sandbox.pbx_lab.live import LiveLab
from wire_protocol.messages import OriginateSettings

pytestmark = [pytest.mark.live, pytest.mark.asyncio(loop_scope="session")]

DOMAIN = "lab.bitrix24.com"
CLIENT_ID = "local.pbxlink.live-c2c"
SECRET = "live-c2c-secret"
OWNER, ANNA = 1, 11
#: How the lab's PBX places a click (``[pbxlink-originate]`` in sandbox/pbx_lab/config/pbx/extensions.conf).
ORIGINATE = OriginateSettings(context="pbxlink-originate", channel_template="PJSIP/{extension}", ring_seconds=15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll: neither the emulator nor moto offers an event to wait on from outside."""
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(predicate):  # noqa: ASYNC110
            await asyncio.sleep(0.2)


@dataclass
class Portal24:
    emulator: Emulator
    url: str
    portal: Portal
    tenant: str
    rt: Runtime

    def click(self, user: int, phone: str) -> str:
        """What a user's click on a phone number in the portal does (the emulator's page API)."""
        answer = post_form(f"{self.url}/_emulator/portals/{DOMAIN}/click", {"user_id": str(user), "phone": phone})
        assert answer.status == 200, answer.body
        return str(answer.json()["CALL_ID"])

    def call(self, call_id: str) -> Call:
        with self.portal.lock:
            return self.portal.calls[call_id]


@asynccontextmanager
async def portal_on_lab(pbx_lab: LiveLab, tmp_path: Path) -> AsyncIterator[Portal24]:
    """The emulator with our app installed into cloud-local, and `edge-agent run` on the lab's PBX."""
    emulator = Emulator(seed=21)
    with EmulatorServer(emulator) as b24:
        portal = emulator.add_portal(DOMAIN)
        portal.add_user(User(OWNER, "Olga", "Owner", admin=True))
        portal.add_user(User(ANNA, "Anna", "Petrova", phone_inner="101"))
        config = CloudLocalConfig(
            table_prefix="live-c2c-",
            rest_port=free_port(),
            extra_env={
                "B24_CLIENT_ID": CLIENT_ID,
                "B24_CLIENT_SECRET": SECRET,
                "B24_OAUTH_URL": f"{b24.url}/oauth/token/",
            },
        )
        async with CloudLocal(config, services=[LicenseService(), CrmSweeper(interval=0.5)]) as cloud:
            emulator.add_app(App(CLIENT_ID, SECRET, handler_url=f"{cloud.rest_url}/b24/install"))
            _, tokens = await asyncio.to_thread(emulator.install, DOMAIN, CLIENT_ID)
            tenant = str(tokens["member_id"])
            rt = Runtime(Settings.from_env())

            def installed() -> bool:
                try:
                    return store.get_tenant(rt, tenant).active and bool(portal.bindings)
                except Exception:
                    return False

            try:
                await until(installed, timeout=30)
                crm = CrmSettings(click_to_call=ClickToCallSettings(originate=ORIGINATE))
                await asyncio.to_thread(save_settings, rt, tenant, crm)  # before the agent's hello: it gets them
                edge = pbx_lab.edge
                login = AmiLogin(edge.host, edge.port, edge.username, edge.secret)
                _, token = await issue_token(tenant, "lab PBX")
                async with running_agent(login, cloud.ws_url, token, tmp_path):
                    yield Portal24(emulator, b24.url, portal, tenant, rt)
            finally:
                rt.close()
                await pbx_lab.world.hangup_all()


async def test_a_click_rings_the_user_then_the_client_and_is_finished_with_the_talk_time(
    pbx_lab: LiveLab, tmp_path: Path
) -> None:
    await pbx_lab.admin.wait_idle()
    await pbx_lab.world.set_behavior("101", "answer")
    await pbx_lab.world.set_behavior(scenarios.OUTSIDE, "answer:2")
    async with portal_on_lab(pbx_lab, tmp_path) as b24:
        call_id = await asyncio.to_thread(b24.click, ANNA, f"+{scenarios.OUTSIDE}")
        await until(lambda: b24.call(call_id).finished)
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


def both_arrived(b24: Portal24, command_id: str) -> bool:
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
            await until(lambda: b24.call(call_id).finished)
            await until(lambda: both_arrived(b24, f"c2c:{call_id}"))  # the slower one must change nothing
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
