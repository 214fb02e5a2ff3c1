"""The whole agent (AMI → interpreter → outbox → websocket) against the fake cloud, with faults on the link.

Real sockets on loopback: the fake AMI server plays recorded calls, the fake cloud stores events by event
id. Every test ends with every call event of the recorded calls stored exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.ami.framing import AmiMessage
from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.config import load_config
from edge_agent.errors import ConfigError
from edge_agent.link.client import LinkClient, LinkOptions
from edge_agent.link.protocol import LinkProtocol, LinkTimings
from edge_agent.outbox import Outbox
from edge_agent.trace import read_trace
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.fake_cloud import FakeCloud
from wire_protocol.channel_rules import ChannelRules
from wire_protocol.messages import AgentSettings, Command, Hello

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TRACES = sorted((ROOT / "tests" / "fixtures" / "traces").glob("*.jsonl"))
AMI_USER = UserSpec("edge-secret", read="system,call,agent,dialplan", write="system,originate")
FAST = LinkOptions(reconnect_initial=0.05, reconnect_max=0.2, refused_initial=0.3, refused_max=0.6, ping_interval=5)
SMALL_WINDOW = LinkTimings(window_events=5)


def calls(count: int = 19) -> list[AmiMessage]:
    if len(TRACES) < count:
        pytest.fail(f"expected at least {count} recorded traces in tests/fixtures/traces")
    return [message for trace in TRACES[:count] for message in read_trace(trace)]


def expected_event_ids(messages: list[AmiMessage]) -> list[str]:
    interpreter = CallInterpreter()
    return [event.event_id for message in messages for event in interpreter.feed(dict(message))]


@contextlib.asynccontextmanager
async def agent_running(
    tmp_path: Path,
    ami: FakeAmiServer,
    cloud: FakeCloud,
    *,
    timings: LinkTimings | None = SMALL_WINDOW,
    options: LinkOptions = FAST,
) -> AsyncIterator[Agent]:
    environ = {
        "EDGE_AMI_PORT": str(ami.port),
        "EDGE_AMI_USER": "edge",
        "EDGE_AMI_SECRET": "edge-secret",
        "EDGE_CLOUD_URL": cloud.url,
        "EDGE_TOKEN": "agent-token",
        "EDGE_DATA_DIR": str(tmp_path / "data"),
    }
    agent = Agent(load_config(environ, need_cloud=True), timings=timings, options=options)
    task = asyncio.create_task(agent.run())
    try:
        await cloud.wait_until(lambda: cloud.open_connections("agent-1") > 0 or task.done())
        await cloud.wait_until(
            lambda: (agent.connector is not None and agent.connector.connected.is_set()) or task.done()
        )
        if task.done():
            task.result()
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmiServer]:
    async with FakeAmiServer({"edge": AMI_USER}) as server:
        yield server


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloud]:
    async with FakeCloud({"agent-token": "agent-1"}) as fake:
        yield fake


async def deliver(ami: FakeAmiServer, cloud: FakeCloud, messages: list[AmiMessage], timeout: float = 10) -> list[str]:
    expected = expected_event_ids(messages)
    assert len(expected) > 50
    await ami.play(messages)
    await cloud.wait_until(lambda: set(cloud.applied) >= set(expected), timeout)
    return expected


async def test_the_tenants_number_rules_from_the_cloud_apply_and_hello_names_the_pbx(
    tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud
) -> None:
    rules = ChannelRules(extensions=frozenset({"reception"}), trunks=frozenset({"1000"}))
    cloud.send_settings = AgentSettings(calls=rules)
    async with agent_running(tmp_path, ami, cloud) as agent:
        await cloud.wait_until(lambda: agent.interpreter is not None and agent.interpreter.rules == rules)
        await cloud.wait_until(lambda: agent.link is not None and agent.link.protocol.hello.pbx_version is not None)
        assert agent.link is not None and agent.link.protocol.hello.pbx_version == f"Asterisk {ami.asterisk_version}"
    assert agent.interpreter is not None and agent.interpreter.rules.is_extension_number("reception")


async def test_the_socket_cut_mid_stream(tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud) -> None:
    cloud.cut_after_batches = 3  # every connection dies on its third batch, before the ack
    async with agent_running(tmp_path, ami, cloud):
        expected = await deliver(ami, cloud, calls())
    assert cloud.connections_opened >= 4
    assert sum(cloud.received.values()) > len(expected)  # there were resends ...
    cloud.exactly_once(expected)  # ... and still each event once


async def test_the_cloud_acking_slowly_keeps_the_window(tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud) -> None:
    cloud.ack_delay = 0.01
    async with agent_running(tmp_path, ami, cloud):
        expected = await deliver(ami, cloud, calls())
    assert 0 < cloud.max_in_flight <= SMALL_WINDOW.window_events
    assert cloud.connections_opened == 1
    cloud.exactly_once(expected)


async def test_messages_delivered_twice(tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud) -> None:
    cloud.duplicate_acks = True
    async with agent_running(tmp_path, ami, cloud):
        await cloud.send_command("agent-1", "click-1", times=2)
        await cloud.wait_until(lambda: len(cloud.results) >= 1)
        await cloud.send_command("agent-1", "click-1")  # again, after it finished
        await cloud.wait_until(lambda: len(cloud.results) >= 2)
        expected = await deliver(ami, cloud, calls())
    originates = [a for a in ami.actions if a.get("Action") == "Originate"]
    assert len(originates) == 1  # the phone rang once
    assert {(r.command_id, r.ok, r.code) for r in cloud.results} == {("click-1", True, "answered")}
    cloud.exactly_once(expected)


async def test_malformed_and_oversized_messages_keep_the_connection(
    tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud
) -> None:
    async with agent_running(tmp_path, ami, cloud):
        for garbage in (
            "not json",
            b"\x00binary",
            '{"type": "ack", "up_to_seq": "x"}',
            '{"type": "nope"}',
            '{"type": "ack", "up_to_seq": 1, "pad": "' + "x" * 200_000 + '"}',
        ):
            await cloud.send("agent-1", garbage)
        expected = await deliver(ami, cloud, calls())
        await cloud.wait_until(lambda: len(cloud.errors) >= 5)
    assert sorted(e.code for e in cloud.errors) == [
        "bad_json",
        "bad_json",
        "invalid_message",
        "too_large",
        "unknown_type",
    ]
    assert cloud.connections_opened == 1
    cloud.exactly_once(expected)


async def test_a_token_revoked_while_connected(tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud) -> None:
    messages = calls()
    half = len(messages) // 2
    async with agent_running(tmp_path, ami, cloud):
        first = await deliver(ami, cloud, messages[:half])
        await cloud.revoke("agent-token")
        await cloud.wait_until(lambda: cloud.open_connections("agent-1") == 0)
        await ami.play(messages[half:])  # calls go on while the link is refused: they wait in the outbox
        await asyncio.sleep(1.2)
        assert 1 <= cloud.refused_upgrades <= 5  # a long backoff, not a tight loop
        cloud.revoked.clear()  # an administrator issues the token again
        expected = expected_event_ids(messages)
        await cloud.wait_until(lambda: set(cloud.applied) >= set(expected))
    assert set(first) < set(expected)
    cloud.exactly_once(expected)


async def test_a_batch_the_cloud_could_not_store_is_sent_again(
    tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud
) -> None:
    cloud.refuse_batches = 2
    async with agent_running(tmp_path, ami, cloud, timings=LinkTimings(window_events=5, error_retry=0.1)):
        expected = await deliver(ami, cloud, calls())
    cloud.exactly_once(expected)


async def test_renewal_before_the_cap_leaves_no_gap(tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud) -> None:
    timings = LinkTimings(window_events=5, max_age=0.4, max_age_jitter=0.1, heartbeat_idle=0.2)
    async with agent_running(tmp_path, ami, cloud, timings=timings):
        messages = calls()
        for start in range(0, len(messages), 200):
            await ami.play(messages[start : start + 200])
            await asyncio.sleep(0.15)
        expected = expected_event_ids(messages)
        await cloud.wait_until(lambda: set(cloud.applied) >= set(expected) and cloud.connections_opened >= 4)
        assert cloud.gaps == 0  # at every moment the agent had a connection
    assert cloud.heartbeats
    cloud.exactly_once(expected)


async def test_stopping_while_the_cloud_does_not_answer_the_upgrade_is_immediate(tmp_path: Path) -> None:
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda _r, writer: accepted.append(writer), "127.0.0.1", 0)  # never answers
    port = silent.sockets[0].getsockname()[1]
    outbox = Outbox(tmp_path / "outbox.db")

    async def nothing(command: Command) -> None:
        pass

    client = LinkClient(
        f"ws://127.0.0.1:{port}/", "t", LinkProtocol(outbox, Hello(agent_version="0")), on_command=nothing
    )
    task = asyncio.create_task(client.run())
    await asyncio.sleep(0.3)  # inside the 15 s open timeout
    client.stop()
    await asyncio.wait_for(task, 1.0)
    assert accepted  # it did get as far as the upgrade
    for writer in accepted:
        writer.close()
    silent.close()
    await silent.wait_closed()
    outbox.close()


async def test_a_second_agent_on_the_same_data_dir_refuses_to_start(
    tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud
) -> None:
    async with agent_running(tmp_path, ami, cloud) as first:
        second = Agent(first.config)
        with pytest.raises(ConfigError, match="another edge-agent is already running"):
            await second.run()
