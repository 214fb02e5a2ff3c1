"""``edge-agent run`` with ``EDGE_CDR_DSN``: after a gap in its AMI view the agent sends, once and marked
backfilled, the calls the CDR has and it never ended; a CDR database it cannot read is retried, the gap kept.

The CDR rows are the ones the lab's Asterisk wrote for the 19 recorded scenarios (tests/fixtures/cdr/); the gap
is the one a restart finds, set up in the outbox as an agent that stopped before those calls would have left it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent import agent as agent_module
from edge_agent.agent import Agent
from edge_agent.cdr.backfill import COVERED_KEY, GAPS_KEY, SINCE_KEY
from edge_agent.cdr.readers import open_reader
from edge_agent.cdr.settings import CdrSettings
from edge_agent.cdr.summaries import summarize_rows
from edge_agent.config import load_config
from edge_agent.link.client import LinkOptions
from edge_agent.outbox import Outbox, outbox_path
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.cdr_fixtures import write_master_db
from sandbox.fake_cloud import FakeCloud
from wire_protocol.call_events import CallEnded
from wire_protocol.channel_rules import ChannelRules

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
AMI_USER = UserSpec("edge-secret", read="system,call,agent,dialplan", write="system,originate")
#: The agent stopped watching just before the first recorded call (09:51:50 on the lab's UTC clock).
WATCHED_FROM = datetime(2026, 11, 26, 9, 40, tzinfo=UTC).timestamp()
WATCHED_UNTIL = datetime(2026, 11, 26, 9, 51, tzinfo=UTC).timestamp()


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "SETTLE_SECONDS", 0.1)
    monkeypatch.setattr(agent_module, "BACKFILL_POLL_SECONDS", 0.1)
    monkeypatch.setattr(agent_module, "CDR_RETRY_SECONDS", 0.2)


@contextlib.asynccontextmanager
async def agent_running(tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud, master_db: Path) -> AsyncIterator[Agent]:
    environ = {
        "EDGE_AMI_PORT": str(ami.port),
        "EDGE_AMI_USER": "edge",
        "EDGE_AMI_SECRET": "edge-secret",
        "EDGE_CLOUD_URL": cloud.url,
        "EDGE_TOKEN": "agent-token",
        "EDGE_DATA_DIR": str(tmp_path / "data"),
        "EDGE_CDR_DSN": f"sqlite://{master_db}",
        "EDGE_CDR_TIMEZONE": "UTC",
        "EDGE_CDR_LATE_SECONDS": "0.3",
    }
    agent = Agent(load_config(environ, need_cloud=True), options=LinkOptions(reconnect_initial=0.05))
    task = asyncio.create_task(agent.run())
    try:
        await cloud.wait_until(lambda: cloud.open_connections("agent-1") > 0 or task.done())
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


def lab_calls(master_db: Path) -> dict[str, CallEnded]:
    reader = open_reader(CdrSettings.model_validate({"dsn": f"sqlite://{master_db}", "timezone": "UTC"}))
    rows = reader.rows(datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))
    reader.close()
    return {
        s.call_id: CallEnded(call_id=s.call_id, seq=9, at=s.ended_at, summary=s)
        for s in summarize_rows(rows, ChannelRules())
    }


def stopped_agent_outbox(tmp_path: Path, ended_by_the_agent: CallEnded) -> Path:
    """The outbox of an agent that watched from 09:40 to 09:51, then stopped; it had ended one of the calls itself."""
    outbox = Outbox(outbox_path(tmp_path / "data"))
    outbox.set_meta(SINCE_KEY, repr(WATCHED_FROM))
    outbox.set_meta(COVERED_KEY, repr(WATCHED_UNTIL))
    outbox.append([ended_by_the_agent])
    outbox.close()
    return outbox_path(tmp_path / "data")


def ends(cloud: FakeCloud) -> dict[str, list[CallEnded]]:
    found: dict[str, list[CallEnded]] = {}
    for event in cloud.events.values():
        if isinstance(event, CallEnded):
            found.setdefault(event.call_id, []).append(event)
    return found


def gaps(path: Path) -> str | None:
    outbox = Outbox(path)
    try:
        return outbox.meta(GAPS_KEY)
    finally:
        outbox.close()


async def test_after_a_restart_the_gaps_calls_arrive_once_marked_backfilled(
    tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud
) -> None:
    master_db = tmp_path / "master.db"
    write_master_db(master_db)
    calls = lab_calls(master_db)
    assert len(calls) == 19
    seen, *missed = sorted(calls)
    path = stopped_agent_outbox(tmp_path, calls[seen])
    async with agent_running(tmp_path, ami, cloud, master_db):
        await cloud.wait_until(lambda: set(ends(cloud)) == set(calls), timeout=20)
        await cloud.wait_until(lambda: gaps(path) is None, timeout=20)  # read twice, then dropped
    received = ends(cloud)
    assert [e.reason for e in received[seen]] == ["hangup"]  # the agent's own end, not resent
    for call_id in missed:
        [end] = received[call_id]
        assert (end.reason, end.seq, end.summary) == ("backfilled", 1, calls[call_id].summary)
    assert sum(cloud.received[f"{call_id}:1"] for call_id in missed) == len(missed)


async def test_a_cdr_database_it_cannot_read_is_retried_and_the_gap_kept(
    tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud, caplog: pytest.LogCaptureFixture
) -> None:
    master_db = tmp_path / "later" / "master.db"
    reference = tmp_path / "reference.db"
    write_master_db(reference)
    calls = lab_calls(reference)
    seen = sorted(calls)[0]
    path = stopped_agent_outbox(tmp_path, calls[seen])
    async with agent_running(tmp_path, ami, cloud, master_db):
        await cloud.wait_until(lambda: "cannot open the CDR database" in caplog.text, timeout=10)
        assert gaps(path) is not None and set(ends(cloud)) == {seen}
        master_db.parent.mkdir()
        write_master_db(master_db)
        await cloud.wait_until(lambda: set(ends(cloud)) == set(calls), timeout=20)


async def test_a_missing_database_driver_stops_run_at_once_saying_what_to_install(
    tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from edge_agent.errors import CdrError

    monkeypatch.setitem(sys.modules, "pymysql", None)  # not installed
    environ = {
        "EDGE_AMI_PORT": str(ami.port),
        "EDGE_AMI_USER": "edge",
        "EDGE_AMI_SECRET": "edge-secret",
        "EDGE_CLOUD_URL": cloud.url,
        "EDGE_TOKEN": "agent-token",
        "EDGE_DATA_DIR": str(tmp_path / "data"),
        "EDGE_CDR_DSN": "mysql://pbxlink:pw@127.0.0.1/asteriskcdrdb",
    }
    agent = Agent(load_config(environ, need_cloud=True))
    with pytest.raises(CdrError, match=r"pip install 'pbxlink\[cdr-mysql\]'"):
        await asyncio.wait_for(agent.run(), 10)
    assert cloud.open_connections("agent-1") == 0
