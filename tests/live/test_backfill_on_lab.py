"""Backfill from the CDR on a real Asterisk 22: calls made while the agent was stopped, or while its AMI link was
cut, reach the cloud once, as backfilled ``call_ended`` events with the fields the scenarios expect; calls it saw
are never sent again, neither by its own gap backfill nor by ``edge-agent backfill`` over an overlapping period.

The agent is the production one (``Agent``, what ``edge-agent run`` runs) against ``sandbox/fake_cloud.py``, with
``EDGE_CDR_DSN`` pointing at the lab PBX's ``master.db`` (``cdr_sqlite3_custom``, FreePBX-like columns) and
``EDGE_CDR_CEL_TABLE`` at its ``cel`` table (``cel_sqlite3_custom``), so the transfers are compared too.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent import agent as agent_module
from edge_agent.agent import Agent
from edge_agent.cdr.command import run_backfill
from edge_agent.config import AgentConfig, load_config
from edge_agent.link.client import LinkOptions
from edge_agent.outbox import Outbox, outbox_path
from sandbox.call_expectations import mismatches
from sandbox.fake_cloud import FakeCloud
from sandbox.pbx_lab import scenarios
from sandbox.pbx_lab.live import LiveLab
from wire_protocol.call_events import CallEnded

pytestmark = [pytest.mark.live, pytest.mark.asyncio(loop_scope="session")]

TOKEN, AGENT_ID = "lab-backfill-token", "agent-backfill"
#: Seen live by the agent, then made while it is stopped (several kinds: queue, pickup, transfer, outbound, internal).
SEEN = ["inbound_direct_answered"]
MISSED = ["inbound_queue_answered", "inbound_pickup", "blind_transfer", "outbound_busy", "internal_unanswered"]
#: What the CDR and CEL cannot say (docs/cdr-backfill.md); ``recording`` is compared as a file name below.
NOT_IN_CDR = ("command_id", "recording")


def config(pbx_lab: LiveLab, cloud: FakeCloud, data_dir: Path, *, ami_port: int | None = None) -> AgentConfig:
    edge = pbx_lab.edge
    settings = data_dir / "agent.toml"
    data_dir.mkdir(parents=True, exist_ok=True)
    settings.write_text("[ami]\nreconnect_max = 1.0\n")  # back on AMI within a second of the link's return
    environ = {
        "EDGE_AMI_HOST": edge.host,
        "EDGE_AMI_PORT": str(ami_port or edge.port),
        "EDGE_AMI_USER": edge.username,
        "EDGE_AMI_SECRET": edge.secret,
        "EDGE_CLOUD_URL": cloud.url,
        "EDGE_TOKEN": TOKEN,
        "EDGE_DATA_DIR": str(data_dir),
        "EDGE_CDR_DSN": f"sqlite://{pbx_lab.paths.pbx_master_db}",
        "EDGE_CDR_TIMEZONE": "UTC",  # the lab's chroot runs in UTC
        "EDGE_CDR_LATE_SECONDS": "5",
        "EDGE_CDR_CEL_TABLE": "cel",  # the lab logs CEL next to the CDR: transfers are known too
    }
    return load_config(environ, path=settings, need_cloud=True)


class AmiLinkCut:
    """A TCP relay to the PBX's AMI that can be cut: open sessions are aborted and new ones closed at once,
    as when the network between the agent and Asterisk fails."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.down = False
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def cut(self) -> None:
        self.down = True
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.down = False

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - neither the agent nor the fake cloud offers an event for these
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running(agent_config: AgentConfig) -> AsyncIterator[Agent]:
    agent = Agent(agent_config, options=LinkOptions(reconnect_initial=0.1))
    task = asyncio.create_task(agent.run())
    try:
        await until(lambda: task.done() or (agent.link is not None and agent.link.protocol.established), 30)
        await until(lambda: task.done() or (agent.connector is not None and agent.connector.connected.is_set()), 30)
        if task.done():
            task.result()
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)


def ends(cloud: FakeCloud) -> dict[str, list[CallEnded]]:
    found: dict[str, list[CallEnded]] = {}
    for event in cloud.events.values():
        if isinstance(event, CallEnded):
            found.setdefault(event.call_id, []).append(event)
    return found


def gaps_left(data_dir: Path) -> str | None:
    outbox = Outbox(outbox_path(data_dir))
    try:
        return outbox.meta("backfill_gaps")
    finally:
        outbox.close()


async def test_calls_made_while_the_agent_was_stopped_arrive_once_marked_backfilled(
    pbx_lab: LiveLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "SETTLE_SECONDS", 3.0)
    lab = pbx_lab.scenario_lab
    started = datetime.now(UTC)
    async with FakeCloud({TOKEN: AGENT_ID}) as cloud:
        agent_config = config(pbx_lab, cloud, tmp_path)
        seen: list[dict[str, Any]] = []
        async with running(agent_config):
            for name in SEEN:
                seen += [dict(e) for e in await scenarios.SCENARIOS[name](lab)]
            await until(lambda: all(e["call_id"] in ends(cloud) for e in seen))
        # the agent is stopped: these calls happen in the gap
        missed: list[dict[str, Any]] = []
        for name in MISSED:
            missed += [dict(e) for e in await scenarios.SCENARIOS[name](lab)]
        await pbx_lab.admin.wait_idle()
        async with running(agent_config):
            await until(lambda: all(e["call_id"] in ends(cloud) for e in missed))
            await until(lambda: gaps_left(tmp_path) is None)  # both reads of the gap done (the late one too)
            # support reprocesses a period overlapping everything: nothing new is sent
            out = io.StringIO()
            now = datetime.now(UTC)
            resent = await asyncio.to_thread(run_backfill, agent_config, started, now, dry_run=False, out=out, now=now)
            await asyncio.sleep(6)  # the agent's watcher would pick up anything stored from outside within seconds
        applied_ends = ends(cloud)

    assert resent == 0, out.getvalue()
    assert f"{len(seen) + len(missed)} already sent" in out.getvalue(), out.getvalue()
    for call in seen:
        [end] = applied_ends[call["call_id"]]
        assert end.reason == "hangup"
    reported = []
    for call in missed:
        [end] = applied_ends[call["call_id"]]  # once
        assert (end.reason, end.seq) == ("backfilled", 1)
        assert not [e for e in cloud.events.values() if e.call_id == call["call_id"] and e is not end]  # alone
        reported.append(end.summary.to_json_dict())
        if call.get("recording"):
            assert end.summary.recording == os.path.basename(call["recording"])
    want = [{k: v for k, v in call.items() if k not in NOT_IN_CDR} for call in missed]
    assert mismatches(want, reported) == []


#: Made while the agent's AMI link is cut.
DURING_CUT = ["inbound_queue_local_members", "attended_transfer", "outbound_no_answer"]


async def test_calls_made_while_ami_was_cut_are_backfilled_and_a_call_reported_lost_is_not_resent(
    pbx_lab: LiveLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "SETTLE_SECONDS", 3.0)
    lab = pbx_lab.scenario_lab
    relay = AmiLinkCut(pbx_lab.edge.port)
    await relay.start()
    try:
        async with (
            FakeCloud({TOKEN: AGENT_ID}) as cloud,
            running(config(pbx_lab, cloud, tmp_path, ami_port=relay.port)) as agent,
        ):
            connector, interpreter = agent.connector, agent.interpreter
            assert connector is not None and interpreter is not None
            # a call that is answered before the cut and ends during it: the agent reports it ``lost``
            since = await scenarios._prepare(lab, {"101": "answer"})
            await lab.world.call_in(scenarios.CUSTOMER, scenarios.LINE_101, hangup_after=4)
            lost = await scenarios._call_id(lab, since, channel_prefix="PJSIP/carrier-", exten=scenarios.LINE_101)
            await until(lambda: lost in interpreter.open_call_ids())
            await scenarios._wait_up(lab, "101", since)
            relay.cut()
            await until(lambda: not connector.connected.is_set())
            await scenarios._finish(lab, lost)
            missed: list[dict[str, Any]] = []
            for name in DURING_CUT:
                missed += [dict(e) for e in await scenarios.SCENARIOS[name](lab)]
            await pbx_lab.admin.wait_idle()
            relay.restore()
            await until(lambda: all(e["call_id"] in ends(cloud) for e in missed) and lost in ends(cloud))
            await until(lambda: gaps_left(tmp_path) is None)
            applied_ends = ends(cloud)
    finally:
        await relay.stop()

    [lost_end] = applied_ends[lost]
    assert lost_end.reason == "lost"  # the CDR's row for it is not sent again
    reported = []
    for call in missed:
        [end] = applied_ends[call["call_id"]]
        assert (end.reason, end.seq) == ("backfilled", 1)
        reported.append(end.summary.to_json_dict())
    want = [{k: v for k, v in call.items() if k not in NOT_IN_CDR} for call in missed]
    assert mismatches(want, reported) == []
