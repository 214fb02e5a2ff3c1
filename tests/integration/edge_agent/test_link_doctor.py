"""``edge-agent doctor`` against the fake AMI and the fake cloud: what it says when all is well, and when not."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig, load_config
from edge_agent.doctor import Check, print_report, run_doctor
from edge_agent.errors import TokenRefusedError
from edge_agent.link.client import open_connection
from edge_agent.outbox import Outbox
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.fake_cloud import FakeCloud
from sandbox.portal_stack import portal_stack
from wire_protocol.call_events import CallRinging

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

USERS = {
    "edge": UserSpec("edge-secret", read="system,call,agent,dialplan", write="system,originate"),
    "nooriginate": UserSpec("edge-secret", read="system,call,agent,dialplan", write="system"),
    "nosystem": UserSpec("edge-secret", read="call", write="originate"),
}


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmiServer]:
    async with FakeAmiServer(USERS) as server:
        yield server


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloud]:
    async with FakeCloud({"good-token": "agent-1"}) as fake:
        yield fake


def config(
    tmp_path: Path, ami_port: int, cloud_url: str, *, user: str = "edge", token: str = "good-token"
) -> AgentConfig:
    environ = {
        "EDGE_AMI_PORT": str(ami_port),
        "EDGE_AMI_USER": user,
        "EDGE_AMI_SECRET": "edge-secret",
        "EDGE_CLOUD_URL": cloud_url,
        "EDGE_TOKEN": token,
        "EDGE_DATA_DIR": str(tmp_path),
        "EDGE_OUTBOX_MAX_EVENTS": "10",
        "EDGE_RECORDINGS_ROOT": str(tmp_path / "pbx"),
        "EDGE_RECORDINGS_CONVERTER": "none",
    }
    (tmp_path / "pbx/var/spool/asterisk/monitor").mkdir(parents=True, exist_ok=True)
    return load_config(environ, need_cloud=True)


def statuses(checks: list[Check]) -> dict[str, str]:
    return {check.name: check.status for check in checks}


async def test_all_good(tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud) -> None:
    checks = await run_doctor(config(tmp_path, ami.port, cloud.url), timeout=3)
    assert statuses(checks) == {
        "AMI reachable": "ok",
        "AMI login": "ok",
        "AMI CoreShowChannels": "ok",
        "AMI Filter": "ok",
        "AMI Originate": "ok",
        "cloud reachable": "ok",
        "token": "ok",
        "license": "skip",  # the fake cloud does not say
        "clock": "ok",  # the fake cloud's HTTP Date is this host's clock
        "outbox": "ok",
        "recordings files": "ok",
        "recordings MP3": "ok",
    }
    out = io.StringIO()
    assert print_report(checks, out) is True
    assert "all good" in out.getvalue()
    assert not [a for a in ami.actions if a.get("Action") == "Originate" and a.get("Channel")]  # nothing dialed
    assert cloud.probe_upgrades == cloud.upgrades == 1  # marked as a check: the running agent keeps its link


async def test_problems_are_named_and_fail(tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud) -> None:
    checks = await run_doctor(config(tmp_path, ami.port, cloud.url, user="nooriginate", token="stolen"), timeout=3)
    found = statuses(checks)
    assert (found["AMI Originate"], found["token"]) == ("fail", "fail")
    assert "HTTP 401" in next(c.detail for c in checks if c.name == "token")
    out = io.StringIO()
    assert print_report(checks, out) is False
    assert "problems with AMI Originate, token" in out.getvalue()


async def test_ami_without_system_and_cloud_down(tmp_path: Path, ami: FakeAmiServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    checks = await run_doctor(config(tmp_path, ami.port, f"ws://127.0.0.1:{dead}/", user="nosystem"), timeout=3)
    found = statuses(checks)
    assert found["AMI CoreShowChannels"] == "fail" and found["cloud reachable"] == "fail"


async def test_a_full_outbox_fails_and_a_filling_one_warns(
    tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", max_events=10)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    outbox.append([CallRinging(call_id="c", seq=n, at=at, extension="101") for n in range(1, 9)])
    checks = await run_doctor(config(tmp_path, ami.port, cloud.url), skip_cloud=True, timeout=3)
    [box] = [c for c in checks if c.name == "outbox"]
    assert box.status == "warn" and "8 event(s) waiting of 10" in box.detail
    outbox.append([CallRinging(call_id="d", seq=n, at=at, extension="101") for n in range(1, 3)])
    checks = await run_doctor(config(tmp_path, ami.port, cloud.url), skip_cloud=True, timeout=3)
    assert statuses(checks)["outbox"] == "fail"


async def test_a_refused_token_is_its_own_error(cloud: FakeCloud) -> None:
    with pytest.raises(TokenRefusedError, match="HTTP 401"):
        await open_connection(cloud.url, "nope")
    assert cloud.refused_upgrades == 1


async def test_the_command_exits_non_zero_on_a_problem(tmp_path: Path, ami: FakeAmiServer, cloud: FakeCloud) -> None:
    env = {
        **os.environ,
        "EDGE_AMI_PORT": str(ami.port),
        "EDGE_AMI_USER": "edge",
        "EDGE_AMI_SECRET": "edge-secret",
        "EDGE_CLOUD_URL": cloud.url,
        "EDGE_DATA_DIR": str(tmp_path),
    }

    async def doctor(token: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edge_agent.cli",
            "doctor",
            "--timeout",
            "3",
            env={**env, "EDGE_TOKEN": token},
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        return process.returncode or 0, out.decode()

    code, out = await doctor("good-token")
    assert code == 0, out
    code, out = await doctor("revoked-token")
    assert code == 1 and "FAIL  token" in out and "revoked-token" not in out


async def test_the_license_the_real_cloud_reports(tmp_path: Path, ami: FakeAmiServer) -> None:
    """Against cloud-local with the license server: a new portal is on its trial, with every feature."""
    async with portal_stack(table_prefix="doctor-") as stack:
        environ = {
            "EDGE_AMI_PORT": str(ami.port),
            "EDGE_AMI_USER": "edge",
            "EDGE_AMI_SECRET": "edge-secret",
            "EDGE_CLOUD_URL": stack.cloud.ws_url,
            "EDGE_TOKEN": await stack.agent_token(),
            "EDGE_DATA_DIR": str(tmp_path),
        }
        checks = await run_doctor(load_config(environ, need_cloud=True), timeout=5)
    (license_check,) = [c for c in checks if c.name == "license"]
    assert license_check.status == "ok", license_check
    assert license_check.detail.startswith("trial (trial, ends ") and "click_to_call" in license_check.detail
