"""Click-to-call, the whole path on loopback: a click on the Bitrix24 emulator's page API → ONEXTERNALCALLSTART
posted to cloud-local's events route → an ``originate`` command over the websocket → the real ``edge-agent``
→ an AMI Originate on the fake AMI server → the call's events (a recorded lab call, tied to the command by its
channel variable) → the CRM pipeline → the click's CALL_ID finished once in the emulator.

The fake AMI server answers the Originate through a hook: for a click that works it plays the recorded
outbound lab call with the command's variable set on its first channel, then reports Reason 4; for a phone
that cannot be rung it reports Reason 0 with no channel at all (nothing for the pipeline to see).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cloud.agents.commands import get_command
from cloud.calls.store import list_calls
from edge_agent.ami.framing import AmiMessage
from edge_agent.calls.interpreter import COMMAND_ID_VARIABLE, ORIGINATE_ACTION_PREFIX
from edge_agent.trace import read_trace
from sandbox.ami_server.messages import header
from sandbox.ami_server.originate import REASON_ANSWERED, REASON_FAILED, OriginateOutcome
from sandbox.ami_server.server import FakeAmiServer, UserSpec
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.portal_stack import ANNA, PortalStack, portal_stack, until

pytestmark = [pytest.mark.integration]

TRACES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"
#: The number the recorded outbound call dialed (extension 101 → the carrier).
OUTSIDE = "79031112233"


def tagged_trace(command_id: str) -> list[AmiMessage]:
    """The recorded outbound call, as the agent's Originate would make it: the command's variable is set on the
    call's first channel right after it appears (Asterisk sets an Originate's variables on the new channel)."""
    messages = list(read_trace(TRACES / "outbound_answered.jsonl"))
    first = next(i for i, m in enumerate(messages) if m.get("Event") == "Newchannel")
    channel = messages[first]
    fields = {key: value for key, value in channel.items() if key not in ("Event", "Privilege")}
    # "Event" first: the agent's server-side filters match the event's text from its first line
    varset: AmiMessage = {"Event": "VarSet", "Privilege": "dialplan,all", **fields}
    varset |= {"Variable": COMMAND_ID_VARIABLE, "Value": command_id}
    return [*messages[: first + 1], varset, *messages[first + 1 :]]


@dataclass
class Pbx:
    """What the fake PBX does with each Originate, in order: ``True`` = the call goes through."""

    ami: FakeAmiServer
    script: list[bool] = field(default_factory=list)
    originates: list[AmiMessage] = field(default_factory=list)

    async def on_originate(self, action: AmiMessage) -> OriginateOutcome:
        self.originates.append(action)
        works = self.script.pop(0) if self.script else False
        if not works:
            return OriginateOutcome(reason=REASON_FAILED)
        command_id = header(action, "ActionID").removeprefix(ORIGINATE_ACTION_PREFIX)
        await self.ami.play(tagged_trace(command_id), speed=2.0)
        return OriginateOutcome(reason=REASON_ANSWERED)


@dataclass
class Stack:
    """The portal stack, with a fake PBX answering the agent's Originates."""

    base: PortalStack
    pbx: Pbx

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def finished(self, call_id: str) -> bool:
        return bool(self.base.call(call_id).finished)


@asynccontextmanager
async def click_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with (
        portal_stack(table_prefix="c2c-", seed=13) as base,
        FakeAmiServer({"edge": UserSpec("edge-secret")}) as ami,
    ):
        pbx = Pbx(ami)
        ami.on_originate = pbx.on_originate
        login = AmiLogin("127.0.0.1", ami.port, "edge", "edge-secret")
        async with running_agent(login, base.cloud.ws_url, await base.agent_token(), tmp_path):
            yield Stack(base, pbx)


async def test_a_click_rings_the_user_then_the_client_and_its_call_id_is_finished_once(tmp_path: Path) -> None:
    async with click_stack(tmp_path) as stack:
        stack.pbx.script = [True, False]
        stack.emulator.faults.duplicate_events = True  # Bitrix24 may post a click twice: still one call each
        call_id = await asyncio.to_thread(stack.click, ANNA, f"+{OUTSIDE}")
        assert await until(lambda: stack.finished(call_id), timeout=20)
        answered = stack.call(call_id)
        talk = {c.call_id: c.summary.talk_seconds for c in list_calls(stack.rt, stack.tenant) if c.summary}

        # the second click: Anna's phone cannot be rung (Reason 0, no channel): finished with the reason
        failed_id = await asyncio.to_thread(stack.click, ANNA, "+79261234567")
        assert await until(lambda: stack.finished(failed_id))
        failed = stack.call(failed_id)
        command = await asyncio.to_thread(get_command, stack.rt, stack.tenant, f"c2c:{failed_id}")
        audit = stack.portal.audit()
        deliveries = [e.attempts for e in stack.portal.events if e.event == "ONEXTERNALCALLSTART"]
        registrations = len(stack.portal.calls)
        originates = list(stack.pbx.originates)

    assert [(header(a, "Channel"), header(a, "Exten")) for a in originates] == [  # one Originate per click
        ("PJSIP/101", OUTSIDE),
        ("PJSIP/101", "79261234567"),
    ]
    assert (answered.finish_user_id, answered.status_code, answered.failed_reason) == (ANNA, "200", "")
    assert list(talk.values()) == [answered.duration] and answered.duration > 0  # the agent's talk time
    assert (failed.finish_user_id, failed.status_code, failed.duration) == (ANNA, "503", 0)
    assert failed.failed_reason == "The phone system could not ring your phone."  # the portal speaks English
    assert command is not None and (command["ok"], command["code"]) == (False, "failed")
    assert deliveries == [["200", "200"], ["200", "200"]]  # each click was posted twice and accepted twice
    assert registrations == 2  # the two clicks' CALL_IDs; nothing registered again
    assert audit["unfinished"] == [] and audit["open_cards"] == {} and audit["reregistered"] == {}
