"""Real lab calls, the whole path on loopback: recorded Asterisk 22 AMI (served over a real AMI socket) →
``edge-agent`` → cloud-local (websocket API, moto server, REST) → the Bitrix24 emulator, installed into the
portal the way Bitrix24 installs apps. The emulator's state is the judge: who saw cards, one registration
per call leg, the finish fields, nothing left open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloud.calls.store import list_calls
from edge_agent.trace import read_trace
from sandbox.ami_server.server import FakeAmiServer, UserSpec
from sandbox.bitrix24.portal import Call
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.portal_stack import ANNA, BORIS, PortalStack, card_users, portal_stack, until

pytestmark = [pytest.mark.integration]

TRACES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"


@dataclass
class Stack:
    """The portal stack, an AMI server that plays recorded lab calls, and an agent connected to both."""

    portal_stack: PortalStack
    ami: FakeAmiServer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.portal_stack, name)


@asynccontextmanager
async def whole_stack(tmp_path: Path, **faults: Any) -> AsyncIterator[Stack]:
    async with portal_stack(table_prefix="e2e-") as stack:
        for name, value in faults.items():
            setattr(stack.emulator.faults, name, value)
        async with FakeAmiServer({"edge": UserSpec("edge-secret")}) as ami:
            login = AmiLogin("127.0.0.1", ami.port, "edge", "edge-secret")
            async with running_agent(login, stack.cloud.ws_url, await stack.agent_token(), tmp_path):
                yield Stack(stack, ami)


def call_id_of(name: str) -> str:
    """The Linkedid of a trace's call: its first channel's (each lab trace holds one call)."""
    return next(m["Linkedid"] for m in read_trace(TRACES / f"{name}.jsonl") if m.get("Event") == "Newchannel")


async def play(stack: Stack, *names: str, speed: float | None = 4.0) -> set[str]:
    """Play lab traces over the AMI socket, ``speed`` times faster than they happened (``None``: at once, as
    after an outage); the Linkedids of their calls."""
    for name in names:
        await stack.ami.play(read_trace(TRACES / f"{name}.jsonl"), speed=speed)
    return {call_id_of(name) for name in names}


def registered(stack: Stack, call_id: str) -> list[Call]:
    return stack.portal_stack.registrations(call_id)


async def test_lab_calls_land_in_the_portal_once_with_cards_owners_and_statuses(tmp_path: Path) -> None:
    async with whole_stack(tmp_path) as stack:
        names = ["inbound_queue_answered", "inbound_direct_missed", "blind_transfer", "outbound_busy"]
        call_ids = await play(stack, *names)
        assert await until(lambda: stack.crm_done(call_ids))
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
        assert await until(lambda: stack.crm_done(call_ids), timeout=120)
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
        assert await until(lambda: stack.crm_done(call_ids), timeout=120)
        audit = stack.portal.audit()
        legs = {name: registered(stack, call_id_of(name)) for name in names}
    assert audit["unfinished"] == [] and audit["open_cards"] == {} and audit["duplicate_external_ids"] == {}
    assert [len(legs[name]) for name in names] == [1, 2, 1, 1]
    assert [legs[name][-1].status_code for name in names] == ["200", "200", "200", "304"]
