"""The agent against the real cloud on loopback (cloud-local: the Chalice app behind the local API Gateway,
moto as DynamoDB), the fake AMI playing every recorded call: each call event stored once in the cloud, and a
click-to-call pushed twice rings once and its result is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloud.agents.commands import get_command, send_command
from cloud.calls.store import list_events
from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.trace import read_trace
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.cloud_local import CloudLocal, CloudLocalConfig
from sandbox.cloud_local.agents import AmiLogin, issue_token, running_agent
from sandbox.cloud_local.agents import runtime as cloud_runtime
from wire_protocol.messages import Command, OriginateCommand

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TRACES = sorted((ROOT / "tests" / "fixtures" / "traces").glob("*.jsonl"))


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll: the agent's state has no event to wait on from outside."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_every_recorded_call_reaches_the_cloud_once(tmp_path: Path) -> None:
    messages = [m for trace in TRACES for m in read_trace(trace)]
    interpreter = CallInterpreter()
    expected = [e.event_id for m in messages for e in interpreter.feed(dict(m))]
    user = UserSpec("edge-secret", read="system,call,agent,dialplan", write="system,originate")
    async with CloudLocal(CloudLocalConfig(table_prefix="edge-")) as cloud, FakeAmiServer({"edge": user}) as ami:
        runtime = cloud_runtime()
        agent_id, token = await issue_token("acme", "HQ")
        async with running_agent(
            AmiLogin("127.0.0.1", ami.port, "edge", "edge-secret"), cloud.ws_url, token, tmp_path
        ) as agent:
            await ami.play(messages)
            await until(lambda: agent.link is not None and agent.link.protocol.acked_seq >= len(expected))
            click = Command(command_id="click-1", command=OriginateCommand(extension="101", number="79001234567"))
            for _ in range(2):  # pushed twice: the phone rings once
                await asyncio.to_thread(send_command, runtime, "acme", agent_id, click)
            done: list[dict[str, Any]] = []

            def finished() -> bool:
                done[:] = [get_command(runtime, "acme", "click-1") or {}]
                return done[0].get("status") == "done"

            await until(finished)
        stored = await asyncio.to_thread(lambda: list(list_events(runtime, "acme", agent_id)))
    assert sorted(e["agent_seq"] for e in stored) == list(range(1, len(expected) + 1))
    assert sorted(e["event_id"] for e in stored) == sorted(expected)
    assert (done[0]["ok"], done[0]["code"]) == (True, "answered")
    assert len([a for a in ami.actions if a.get("Action") == "Originate"]) == 1
