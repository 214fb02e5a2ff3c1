"""Real lab calls, the whole path on loopback: recorded Asterisk 22 AMI (served over a real AMI socket) →
``edge-agent`` → cloud-local (websocket API, moto server, REST) → the Bitrix24 emulator, installed into the
portal the way Bitrix24 installs apps. The emulator's state is the judge: who saw cards, one registration
per call leg, the finish fields, nothing left open.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloud.calls.store import list_calls
from cloud.crm.pipeline import crm_status
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.tenants import store
from edge_agent.trace import read_trace
from sandbox.ami_server.server import FakeAmiServer, UserSpec
from sandbox.bitrix24 import App, Emulator, EmulatorServer, User
from sandbox.bitrix24.portal import Portal
from sandbox.cloud_local import CloudLocal, CloudLocalConfig, CrmSweeper
from sandbox.cloud_local.agents import AmiLogin, issue_token, running_agent
from sandbox.cloud_local.license import LicenseService

pytestmark = [pytest.mark.integration]

TRACES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"
DOMAIN = "acme.bitrix24.com"
CLIENT_ID = "local.pbxlink.e2e"
SECRET = "e2e-secret"
ANNA, BORIS, OWNER = 11, 12, 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll: the emulator and moto offer no event to wait on from outside."""
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(predicate):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


@dataclass
class Stack:
    emulator: Emulator
    portal: Portal
    cloud: CloudLocal
    tenant: str
    ami: FakeAmiServer
    rt: Runtime

    def calls_done(self, call_ids: set[str]) -> bool:
        agent_calls = {c.call_id: c for c in list_calls(self.rt, self.tenant)}
        if not call_ids <= set(agent_calls):
            return False
        for call_id in call_ids:
            status = crm_status(self.rt, self.tenant, agent_calls[call_id].agent_id, call_id)
            if status is None or status.get("crm_status") not in ("done", "skipped"):
                return False
        return True

    def finished(self) -> dict[str, Any]:
        """External call id → the emulator's call, for every registration."""
        with self.portal.lock:
            return {c.external_call_id or c.call_id: c for c in self.portal.calls.values()}


@asynccontextmanager
async def whole_stack(tmp_path: Path, **faults: Any) -> AsyncIterator[Stack]:
    emulator = Emulator(seed=11)
    with EmulatorServer(emulator) as b24:
        portal = emulator.add_portal(DOMAIN)
        portal.add_user(User(OWNER, "Olga", "Owner", admin=True))
        portal.add_user(User(ANNA, "Anna", "Petrova", phone_inner="101"))
        portal.add_user(User(BORIS, "Boris", "Ivanov", phone_inner="102"))
        rest_port = free_port()
        config = CloudLocalConfig(
            table_prefix="e2e-",
            rest_port=rest_port,
            extra_env={
                "B24_CLIENT_ID": CLIENT_ID,
                "B24_CLIENT_SECRET": SECRET,
                "B24_OAUTH_URL": f"{b24.url}/oauth/token/",
            },
        )
        async with CloudLocal(config, services=[LicenseService(), CrmSweeper(interval=0.3)]) as cloud:
            emulator.add_app(App(CLIENT_ID, SECRET, handler_url=f"{cloud.rest_url}/b24/install"))
            _, tokens = await asyncio.to_thread(emulator.install, DOMAIN, CLIENT_ID)
            tenant = str(tokens["member_id"])
            rt = Runtime(Settings.from_env())

            def installed() -> bool:
                try:
                    return store.get_tenant(rt, tenant).active
                except Exception:
                    return False

            await until(installed, timeout=20)
            for name, value in faults.items():
                setattr(emulator.faults, name, value)
            try:
                async with FakeAmiServer({"edge": UserSpec("edge-secret")}) as ami:
                    _, token = await issue_token(tenant, "HQ")
                    login = AmiLogin("127.0.0.1", ami.port, "edge", "edge-secret")
                    async with running_agent(login, cloud.ws_url, token, tmp_path):
                        yield Stack(emulator, portal, cloud, tenant, ami, rt)
            finally:
                rt.close()


def call_id_of(name: str) -> str:
    """The Linkedid of a trace's call: its first channel's (each lab trace holds one call)."""
    return next(m["Linkedid"] for m in read_trace(TRACES / f"{name}.jsonl") if m.get("Event") == "Newchannel")


async def play(stack: Stack, *names: str, speed: float | None = 4.0) -> set[str]:
    """Play lab traces over the AMI socket, ``speed`` times faster than they happened (``None``: at once, as
    after an outage); the Linkedids of their calls."""
    for name in names:
        await stack.ami.play(read_trace(TRACES / f"{name}.jsonl"), speed=speed)
    return {call_id_of(name) for name in names}


def registered(stack: Stack, call_id: str) -> list[Any]:
    """The emulator's registrations of one PBX call, leg by leg."""
    calls = [c for c in stack.finished().values() if (c.external_call_id or "").split(":")[1:2] == [call_id]]
    return sorted(calls, key=lambda c: c.external_call_id or "")


def card_users(call: Any, action: str) -> set[int]:
    return {uid for _, what, uid in call.card_log if what == action}


async def test_lab_calls_land_in_the_portal_once_with_cards_owners_and_statuses(tmp_path: Path) -> None:
    async with whole_stack(tmp_path) as stack:
        names = ["inbound_queue_answered", "inbound_direct_missed", "blind_transfer", "outbound_busy"]
        call_ids = await play(stack, *names)
        await until(lambda: stack.calls_done(call_ids))
        by_name = {name: call_id_of(name) for name in names}
        audit = stack.portal.audit()
        talk = {c.call_id: c.summary.talk_seconds for c in list_calls(stack.rt, stack.tenant) if c.summary}

    assert audit["unfinished"] == [] and audit["open_cards"] == {}
    assert audit["duplicate_external_ids"] == {} and audit["reregistered"] == {}

    (queue,) = registered(stack, by_name["inbound_queue_answered"])
    assert card_users(queue, "show") == {ANNA, BORIS}  # both phones rang
    assert card_users(queue, "hide") == {ANNA}  # Boris answered: Anna's card closed at once
    assert (queue.finish_user_id, queue.status_code, queue.type) == (BORIS, "200", 2)
    assert queue.duration == talk[by_name["inbound_queue_answered"]]  # the agent's talk time

    assert queue.created_lead is not None  # the customer's number was unknown: it became a lead, owned by
    assert stack.portal.leads[queue.created_lead].fields["ASSIGNED_BY_ID"] == BORIS  # whoever talked
    assert audit["duplicate_leads"] == {}

    (missed,) = registered(stack, by_name["inbound_direct_missed"])
    # The same customer again; only Anna's phone rang, but the missed call goes to the client's manager
    assert (missed.finish_user_id, missed.status_code, missed.created_lead) == (BORIS, "304", None)

    first, second = registered(stack, by_name["blind_transfer"])
    assert (first.finish_user_id, first.status_code, first.type) == (ANNA, "200", 2)
    assert (second.finish_user_id, second.status_code, second.type) == (BORIS, "200", 3)
    assert card_users(second, "show") == {BORIS}

    (outbound,) = registered(stack, by_name["outbound_busy"])
    assert (outbound.user_id, outbound.finish_user_id, outbound.status_code, outbound.type) == (ANNA, ANNA, "486", 1)


async def test_rate_limits_server_errors_and_expiring_tokens_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    names = ["inbound_queue_answered", "inbound_pickup", "attended_transfer", "outbound_answered", "inbound_busy"]
    async with whole_stack(tmp_path, query_limit_rate=0.3, server_error_rate=0.15, expire_every=4) as stack:
        call_ids = await play(stack, *names)
        await until(lambda: stack.calls_done(call_ids), timeout=120)
        audit = stack.portal.audit()
        legs = {name: registered(stack, call_id_of(name)) for name in names}
    assert audit["unfinished"] == [] and audit["open_cards"] == {}
    assert audit["duplicate_external_ids"] == {}
    assert [len(legs[name]) for name in names] == [1, 1, 2, 1, 1]
    assert all(call.finished for calls in legs.values() for call in calls)


async def test_bitrix24_down_and_a_cut_link_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    """Bitrix24 unreachable for a while (minutes, compressed) while calls happen, and the agent's websocket cut
    mid-stream (so it resends what was not acked: duplicates at the cloud)."""
    names = ["inbound_queue_answered", "blind_transfer", "outbound_answered", "inbound_direct_missed"]
    async with whole_stack(tmp_path) as stack:
        stack.emulator.faults.outage_until = time.time() + 8
        playing = asyncio.create_task(play(stack, *names))
        await asyncio.sleep(1.5)
        for connection_id in stack.cloud.gateway.connection_ids():
            await stack.cloud.gateway.delete_connection(connection_id)
        call_ids = await playing
        await until(lambda: stack.calls_done(call_ids), timeout=120)
        audit = stack.portal.audit()
        legs = {name: registered(stack, call_id_of(name)) for name in names}
    assert audit["unfinished"] == [] and audit["open_cards"] == {} and audit["duplicate_external_ids"] == {}
    assert [len(legs[name]) for name in names] == [1, 2, 1, 1]
    assert [legs[name][-1].status_code for name in names] == ["200", "200", "200", "304"]
