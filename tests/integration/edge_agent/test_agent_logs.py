"""``edge-agent run`` at its default (INFO) level through every recorded trace and a click-to-call: each line is
structured (``key=value``, the call or command it is about in its own field), and no phone number, token or AMI
secret appears in the output."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.trace import read_trace
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.fake_cloud import FakeCloud
from wire_protocol.call_events import CallStarted

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TRACES = sorted((ROOT / "tests" / "fixtures" / "traces").glob("*.jsonl"))
TOKEN = "tok-5a4b3c2d1e0f"
SECRET = "ami-s3cret-for-logs"
CLICK_TO_CALL_NUMBER = "79001234567"  # what FakeCloud.send_command dials
FIELDS = ["ts", "level", "logger", "call_id", "command_id", "msg"]


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - another process: nothing to wait on
            await asyncio.sleep(0.05)


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmiServer]:
    user = UserSpec(SECRET, read="system,call,agent,dialplan", write="system,originate")
    async with FakeAmiServer({"edge": user}) as server:
        yield server


def start_agent(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with log.open("w") as stream:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "run"], cwd=ROOT, env=env, stdout=stream, stderr=stream, text=True
        )


def parse(line: str) -> dict[str, str]:
    """One logfmt line -> its fields (values bare or JSON-quoted)."""
    fields = {}
    for match in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        key, value = match.groups()
        fields[key] = shlex.split(value)[0] if value.startswith('"') else value
    return fields


async def test_info_logs_are_structured_and_carry_no_numbers_or_secrets(tmp_path: Path, ami: FakeAmiServer) -> None:
    messages = [m for trace in TRACES for m in read_trace(trace)]
    interpreter = CallInterpreter()
    events = [e for m in messages for e in interpreter.feed(dict(m))]
    expected = [e.event_id for e in events]
    starts = [e for e in events if isinstance(e, CallStarted)]
    numbers = {CLICK_TO_CALL_NUMBER} | {
        n for e in starts for n in (e.external_number, e.line) if n and len(re.sub(r"\D", "", n)) >= 7
    }
    assert len(numbers) > 3  # the traces do have numbers to leak
    log = tmp_path / "agent.log"
    async with FakeCloud({TOKEN: "agent-1"}) as cloud:
        env = {
            **os.environ,
            "EDGE_AMI_PORT": str(ami.port),
            "EDGE_AMI_USER": "edge",
            "EDGE_AMI_SECRET": SECRET,
            "EDGE_CLOUD_URL": cloud.url,
            "EDGE_TOKEN": TOKEN,
            "EDGE_DATA_DIR": str(tmp_path / "data"),
        }
        env.pop("EDGE_LOG_FORMAT", None)
        agent = start_agent(env, log)
        try:
            await eventually(lambda: any(a.get("Action") == "CoreShowChannels" for a in ami.actions))
            await ami.play(messages)
            await eventually(lambda: set(cloud.applied) >= set(expected))
            await cloud.send_command("agent-1", "click-1")
            await eventually(lambda: "originate from" in log.read_text())
        finally:
            agent.send_signal(signal.SIGTERM)
            await eventually(lambda: agent.poll() is not None, 10)
    text = log.read_text()
    assert TOKEN not in text and SECRET not in text
    leaked = sorted(n for n in numbers if n.removeprefix("+") in text)
    assert leaked == []
    lines = [parse(line) for line in text.splitlines() if line.strip()]
    assert lines and all(list(fields) == FIELDS for fields in lines), text
    started = [fields for fields in lines if fields["msg"].startswith("call started")]
    assert sorted(fields["call_id"] for fields in started) == sorted(e.call_id for e in starts)
    (originate,) = [fields for fields in lines if "originate from" in fields["msg"]]
    assert originate["command_id"] == "click-1" and "79*******67" in originate["msg"]
