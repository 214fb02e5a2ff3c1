"""A real ``edge-agent run`` process killed with ``kill -9`` while its outbox is full, then started again:
every call event still reaches the cloud exactly once, and neither the token nor the AMI secret is logged."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.trace import read_trace
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.fake_cloud import FakeCloud

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TRACES = sorted((ROOT / "tests" / "fixtures" / "traces").glob("*.jsonl"))
TOKEN = "tok-9f8e7d6c5b4a"
SECRET = "ami-s3cret-value"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def outbox_depth(data_dir: Path) -> int:
    path = data_dir / "outbox.db"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        db.close()


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll: the things watched (a file, another process) cannot signal an event."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmiServer]:
    async with FakeAmiServer({"edge": UserSpec(SECRET, read="system,call,agent,dialplan", write="system")}) as server:
        yield server


def start_agent(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with log.open("w") as stream:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "-v", "run"],
            cwd=ROOT,
            env=env,
            stdout=stream,
            stderr=subprocess.STDOUT,
            text=True,
        )


async def test_killed_with_a_full_outbox_and_restarted(tmp_path: Path, ami: FakeAmiServer) -> None:
    messages = [m for trace in TRACES for m in read_trace(trace)]
    interpreter = CallInterpreter()
    expected = [e.event_id for m in messages for e in interpreter.feed(dict(m))]
    port = free_port()  # the cloud is down while the calls happen
    data = tmp_path / "data"
    env = {
        **os.environ,
        "EDGE_AMI_PORT": str(ami.port),
        "EDGE_AMI_USER": "edge",
        "EDGE_AMI_SECRET": SECRET,
        "EDGE_CLOUD_URL": f"ws://127.0.0.1:{port}/agent",
        "EDGE_TOKEN": TOKEN,
        "EDGE_DATA_DIR": str(data),
        "EDGE_OUTBOX_MAX_EVENTS": "40",
    }
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    agent = start_agent(env, first_log)
    try:
        await eventually(lambda: any(a.get("Action") == "CoreShowChannels" for a in ami.actions))
        await ami.play(messages)
        await eventually(lambda: outbox_depth(data) == len(expected))
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    first = first_log.read_text()
    assert "OUTBOX FULL" in first  # said loudly, and nothing was dropped
    async with FakeCloud({TOKEN: "agent-1"}, port=port) as cloud:
        agent = start_agent(env, second_log)
        try:
            await eventually(lambda: set(cloud.applied) >= set(expected))
            await eventually(lambda: outbox_depth(data) == 0)
        finally:
            agent.send_signal(signal.SIGTERM)
            await eventually(lambda: agent.poll() is not None, 10)  # the loop must run: the cloud is in it
            code = agent.returncode
    assert code == 0  # a graceful stop
    cloud.exactly_once(expected)
    second = second_log.read_text()
    assert "stopping" in second
    for text in (first, second):
        assert TOKEN not in text and SECRET not in text


async def test_a_refused_ami_login_stops_the_agent_with_exit_code_3(tmp_path: Path, ami: FakeAmiServer) -> None:
    async with FakeCloud({TOKEN: "agent-1"}) as cloud:
        env = {
            **os.environ,
            "EDGE_AMI_PORT": str(ami.port),
            "EDGE_AMI_USER": "edge",
            "EDGE_AMI_SECRET": "wrong-secret",
            "EDGE_CLOUD_URL": cloud.url,
            "EDGE_TOKEN": TOKEN,
            "EDGE_DATA_DIR": str(tmp_path / "data"),
        }
        log = tmp_path / "agent.log"
        agent = start_agent(env, log)
        try:
            # the link may be welcomed before AMI refuses: the shutdown must not hang on it (it once did, 1 in 15)
            await eventually(lambda: agent.poll() is not None, 10)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait(5)
    assert agent.returncode == 3
    assert "refused the AMI login" in log.read_text()
