"""The edge agent as deployed, on a real Asterisk 22: every lab scenario, as the agent reports it.

The agent path is the production one: AmiConnector logged in as the minimal `edge` user with server-side
filters, feeding the interpreter. Each scenario knows what it did on the PBX (and checks it against the PBX's
own events); the agent's summaries must match. With PBXLINK_RECORD_FIXTURES=1 each scenario's raw AMI stream
(unfiltered, as Asterisk sent it) and its expectations are written to tests/fixtures/traces/ for the fast tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from edge_agent.ami.connector import AmiConnector, AmiSettings
from edge_agent.ami.framing import AmiMessage
from edge_agent.ami.originate import OriginateRequest
from edge_agent.calls.interpreter import AMI_EVENT_FILTERS, CallInterpreter
from edge_agent.sinks import InterpretingSink
from sandbox.call_expectations import mismatches
from sandbox.pbx_lab import scenarios
from sandbox.pbx_lab.live import LiveLab
from wire_protocol.call_events import CallEnded, CallEvent, CallSummary

pytestmark = [pytest.mark.live, pytest.mark.asyncio(loop_scope="session")]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "traces"
RECORD = os.environ.get("PBXLINK_RECORD_FIXTURES") == "1"


class RawRecorder:
    """Every AMI event as Asterisk sent it (a second, unfiltered session), for fixtures."""

    def __init__(self) -> None:
        self.messages: list[AmiMessage] = []
        self.last_at = time.monotonic()

    def on_snapshot(self, live_channels: list[AmiMessage], at: float) -> None:
        pass

    def on_event(self, message: AmiMessage) -> None:
        self.messages.append(message)
        self.last_at = time.monotonic()


class AgentOnLab:
    def __init__(self, lab: LiveLab) -> None:
        self.events: list[CallEvent] = []
        self.summaries: dict[str, CallSummary] = {}
        self.changed = asyncio.Event()
        self.interpreter = CallInterpreter()
        self.recorder = RawRecorder()
        edge = lab.edge
        base = {"host": edge.host, "port": edge.port, "username": edge.username, "secret": SecretStr(edge.secret)}
        self.connector = AmiConnector(
            AmiSettings.model_validate({**base, "event_filters": AMI_EVENT_FILTERS}),
            InterpretingSink(self.interpreter, self._on_call_event),
        )
        self.raw_connector = AmiConnector(AmiSettings.model_validate(base), self.recorder)
        self._tasks: list[asyncio.Task[None]] = []

    def _on_call_event(self, event: CallEvent) -> None:
        self.events.append(event)
        if isinstance(event, CallEnded):
            self.summaries[event.call_id] = event.summary
        self.changed.set()

    async def start(self) -> None:
        self._tasks = [asyncio.ensure_future(c.run()) for c in (self.connector, self.raw_connector)]
        for connector in (self.connector, self.raw_connector):
            await asyncio.wait_for(connector.connected.wait(), 10)

    async def stop(self) -> None:
        for connector in (self.connector, self.raw_connector):
            await connector.stop()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)

    async def wait_for_calls(self, call_ids: list[str], timeout: float = 15) -> None:
        async with asyncio.timeout(timeout):
            while not all(c in self.summaries for c in call_ids):
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.2)
        # let the unfiltered recorder catch up with the last hangups
        while time.monotonic() - self.recorder.last_at < 0.5:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def agent(pbx_lab: LiveLab) -> AsyncIterator[AgentOnLab]:
    harness = AgentOnLab(pbx_lab)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


def record_fixture(name: str, messages: list[AmiMessage], expected: list[dict[str, Any]]) -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    with open(FIXTURES / f"{name}.jsonl", "w", encoding="utf-8") as out:
        for message in messages:
            out.write(json.dumps(message, ensure_ascii=False) + "\n")
    (FIXTURES / f"{name}.expected.json").write_text(json.dumps(expected, indent=1, default=list) + "\n")


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
async def test_the_agent_reports_each_lab_call_as_it_happened(pbx_lab: LiveLab, agent: AgentOnLab, name: str) -> None:
    mark = len(agent.recorder.messages)
    expected: list[dict[str, Any]] = [dict(e) for e in await scenarios.SCENARIOS[name](pbx_lab.scenario_lab)]
    await agent.wait_for_calls([str(e["call_id"]) for e in expected])
    reported = [s.to_json_dict() for s in agent.summaries.values()]
    assert mismatches(expected, reported) == []
    if RECORD:
        record_fixture(name, agent.recorder.messages[mark:], expected)


async def click_to_call(
    pbx_lab: LiveLab, agent: AgentOnLab, command_id: str, ring_seconds: int
) -> tuple[Any, CallSummary]:
    world = pbx_lab.world
    before = set(agent.summaries)
    result = await agent.connector.originate(
        OriginateRequest(command_id=command_id, extension="101", number=scenarios.OUTSIDE, ring_seconds=ring_seconds)
    )
    async with asyncio.timeout(30):
        while not (new := [s for c, s in agent.summaries.items() if c not in before and s.command_id == command_id]):
            agent.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(agent.changed.wait(), 0.2)
    await world.hangup_all()
    return result, new[0]


async def test_click_to_call_rings_the_user_then_the_client_and_is_tied_to_its_command(
    pbx_lab: LiveLab, agent: AgentOnLab
) -> None:
    await pbx_lab.admin.wait_idle()
    await pbx_lab.world.set_behavior("101", "answer")
    await pbx_lab.world.set_behavior(scenarios.OUTSIDE, "answer:2")
    result, summary = await click_to_call(pbx_lab, agent, "c2c-live-1", ring_seconds=15)
    assert (result.success, result.reason) == (True, "answered")
    assert summary.direction == "outbound" and summary.caller_extension == "101"
    assert summary.external_number == scenarios.OUTSIDE and summary.result == "answered"
    assert summary.rang == [] and summary.final_extension == "101" and summary.talk_seconds >= 1


async def test_click_to_call_the_user_does_not_answer(pbx_lab: LiveLab, agent: AgentOnLab) -> None:
    await pbx_lab.admin.wait_idle()
    await pbx_lab.world.set_behavior("101", "ring")
    result, summary = await click_to_call(pbx_lab, agent, "c2c-live-2", ring_seconds=3)
    assert (result.success, result.reason) == (False, "no_answer")
    assert summary.direction == "outbound" and summary.result == "no_answer"
    assert summary.external_number == scenarios.OUTSIDE and summary.answered_at is None


async def test_no_anomalies_on_real_traffic(agent: AgentOnLab) -> None:
    """Runs last in this module: the real PBX's stream never tripped the interpreter's bad-input paths."""
    assert dict(agent.interpreter.anomalies) == {}
