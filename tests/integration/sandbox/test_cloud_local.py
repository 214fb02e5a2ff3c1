"""cloud-local as a whole: the command prints working URLs, the in-process API runs the real cloud app on moto,
and an agent-like client gets in with a token made through the cloud's admin entry point."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sandbox.cloud_local import CloudLocal, CloudLocalConfig
from sandbox.cloud_local.__main__ import main
from sandbox.cloud_local.stack import AwsMode

pytestmark = [pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[3]
PROBE = ["--app", "sandbox.cloud_local.probe_app:app", "--tables", "sandbox.cloud_local.probe_app:create_tables"]
FREE_PORTS = ["--ws-port", "0", "--mgmt-port", "0", "--rest-port", "0", "--license-port", "0"]
URL_LINE = re.compile(r"^  (ws|rest|mgmt|dynamodb)\s+(\S+)")


async def read_banner(process: asyncio.subprocess.Process, timeout: float = 30) -> tuple[dict[str, str], list[str]]:
    """The URLs and table names the command printed (it prints ``tables`` after the URLs)."""
    assert process.stdout is not None
    urls: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout)).decode()
        assert line, f"cloud-local exited early ({process.returncode})"
        if match := URL_LINE.match(line):
            urls[match[1]] = match[2]
        elif line.startswith("  tables"):
            return urls, line.split(None, 1)[1].strip().split(", ")
    raise AssertionError("no banner in time")


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def eventually_async(check: Callable[[], bool], timeout: float) -> None:
    """Poll a blocking ``check`` (boto3 calls) off the loop until it holds."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_command_prints_working_urls_and_stops_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"PROBE_TOKEN": "s3cret"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.cloud_local",
        *PROBE,
        *FREE_PORTS,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        urls, tables = await read_banner(process)
        assert set(urls) == {"ws", "rest", "mgmt", "dynamodb"}
        assert tables == ["pbxlink-local-probe_connections"]
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=urls["dynamodb"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        assert tables[0] in dynamodb.list_tables()["TableNames"]  # created in the printed moto
        health = await asyncio.to_thread(http_json, urls["rest"] + "/health")
        assert health == {"ok": True, "table_prefix": "pbxlink-local-"}
        with pytest.raises(InvalidStatus) as refused:
            await connect(urls["ws"], additional_headers={"Authorization": "Bearer wrong"})
        assert refused.value.response.status_code == 403
        async with connect(urls["ws"] + "/?site=s1", additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            await ws.send("ping")
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["echo"] == "ping"
            listed = await asyncio.to_thread(http_json, urls["rest"] + "/connections")
            assert listed == {"connections": [reply["connection_id"]]}  # REST sees what $connect wrote
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0
    assert b"stopping" in output


def test_command_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        code = main([*PROBE, "--ws-port", str(port), "--mgmt-port", "0", "--rest-port", "0"])
    assert code == 2
    assert "cannot listen" in capsys.readouterr().err
    assert time.monotonic() - started < 10
    assert "WS_MGMT_ENDPOINT" not in os.environ  # nothing left behind


async def test_the_apps_chalice_stage_environment_applies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "stageapp"
    (package / ".chalice").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text("from sandbox.cloud_local.probe_app import app\n")
    stages = {"local": {"environment_variables": {"PBXLINK_TABLE_PREFIX": "staged-", "PROBE_TOKEN": "from-stage"}}}
    (package / ".chalice" / "config.json").write_text(json.dumps({"version": "2.0", "stages": stages}))
    monkeypatch.syspath_prepend(str(tmp_path))
    config = CloudLocalConfig(app="stageapp.app:app", create_tables="sandbox.cloud_local.probe_app:create_tables")
    async with CloudLocal(config) as cloud:
        assert cloud.tables == ["staged-probe_connections"]
        assert cloud.environment["PROBE_TOKEN"] == "from-stage"
        async with connect(cloud.ws_url, additional_headers={"Authorization": "Bearer from-stage"}) as ws:
            await ws.send("hi")
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["echo"] == "hi"
    assert "PROBE_TOKEN" not in os.environ


class RecordingService:
    """A stand-in for what later issues plug in (license server, Bitrix24 emulator)."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen_env: dict[str, str] = {}
        self.stopped = False

    async def start(self, cloud: CloudLocal) -> None:
        self.seen_env = {name: os.environ[name] for name in ("WS_MGMT_ENDPOINT", "AWS_ENDPOINT_URL_DYNAMODB")}

    async def stop(self) -> None:
        self.stopped = True

    def urls(self) -> dict[str, str]:
        return {"recorder": "http://127.0.0.1:1"}


@pytest.mark.parametrize("aws", ["moto", "moto-process"])
async def test_the_real_cloud_app_on_moto_with_an_admin_made_token(
    aws: AwsMode, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process, and with moto server in a child process of its own (the load benchmark's stack)."""
    pytest.importorskip("cloud.app")
    from cloud import admin
    from wire_protocol.messages import Hello, Welcome, decode_cloud_message, encode

    monkeypatch.setenv("AWS_PROFILE", "someone-elses-account")
    service = RecordingService()
    async with CloudLocal(CloudLocalConfig(table_prefix="t-", aws=aws), services=[service]) as cloud:
        moto_child = cloud._moto_process.pid if cloud._moto_process is not None else None
        assert (moto_child is not None) == (aws == "moto-process")
        assert "AWS_PROFILE" not in os.environ  # a local run never reaches a real account
        assert service.seen_env == {
            "WS_MGMT_ENDPOINT": cloud.mgmt_url,
            "AWS_ENDPOINT_URL_DYNAMODB": cloud.dynamodb_url,
        }
        assert cloud.urls()["recorder"] == "http://127.0.0.1:1"
        names = cloud.dynamodb.list_tables()["TableNames"]
        assert {"t-agents", "t-connections", "t-call_events"} <= set(names)
        assert cloud.tables == sorted(names)
        assert cloud.buckets  # the recordings bucket, on the same moto

        assert await asyncio.to_thread(admin.main, ["token", "create", "--tenant", "acme", "--name", "HQ"]) == 0
        printed = capsys.readouterr().out
        token = re.search(r"^token:\s+(\S+)", printed, re.M)
        assert token is not None, printed

        with pytest.raises(InvalidStatus) as refused:
            await connect(cloud.ws_url, additional_headers={"Authorization": "Bearer not-a-token"})
        assert refused.value.response.status_code == 401
        async with connect(cloud.ws_url, additional_headers={"Authorization": f"Bearer {token[1]}"}) as agent:
            await agent.send(encode(Hello(agent_version="0-test")))
            welcome = decode_cloud_message(await asyncio.wait_for(agent.recv(), 5))
            assert isinstance(welcome, Welcome)
            assert welcome.tenant == "acme"
    assert service.stopped
    if moto_child is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(moto_child, 0)  # moto's process ended with the stack
    assert os.environ["AWS_PROFILE"] == "someone-elses-account"  # the environment is restored
    assert "WS_MGMT_ENDPOINT" not in os.environ


async def test_the_real_edge_agent_streams_a_recorded_call_into_cloud_local(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The agent as a customer runs it (``edge-agent run``, its own process), the PBX played by the fake AMI
    server: the call lands in the cloud's tables, through the same URL and token scheme as in AWS."""
    pytest.importorskip("cloud.app")
    from cloud import admin
    from edge_agent.trace import read_trace
    from sandbox.ami_server import FakeAmiServer, UserSpec

    trace = read_trace(REPO_ROOT / "tests/fixtures/traces/inbound_direct_answered.jsonl")
    async with CloudLocal() as cloud, FakeAmiServer({"edge": UserSpec("edge-secret")}) as ami:
        assert await asyncio.to_thread(admin.main, ["token", "create", "--tenant", "acme", "--name", "HQ"]) == 0
        token = re.search(r"^token:\s+(\S+)", capsys.readouterr().out, re.M)
        assert token is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EDGE_"))} | {
            "EDGE_CLOUD_URL": cloud.ws_url,
            "EDGE_TOKEN": token[1],
            "EDGE_DATA_DIR": str(tmp_path),
            "EDGE_AMI_HOST": "127.0.0.1",
            "EDGE_AMI_PORT": str(ami.port),
            "EDGE_AMI_USER": "edge",
            "EDGE_AMI_SECRET": "edge-secret",
        }
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent.cli", "run", cwd=REPO_ROOT, env=env, stderr=asyncio.subprocess.PIPE
        )
        try:
            await ami.wait_until(lambda: any(s.authenticated for s in ami.sessions), timeout=15)
            await eventually_async(lambda: bool(cloud.gateway.connection_ids()), timeout=15)
            await ami.play(trace)

            def stored() -> tuple[int, int]:
                tables = (f"{cloud.table_prefix}calls", f"{cloud.table_prefix}call_events")
                calls, events = (cloud.dynamodb.scan(TableName=t, Select="COUNT")["Count"] for t in tables)
                return calls, events

            await eventually_async(lambda: stored()[0] == 1 and stored()[1] > 0, timeout=15)
        finally:
            agent.send_signal(signal.SIGINT)
            _, log = await asyncio.wait_for(agent.communicate(), 15)
        assert agent.returncode == 0, log.decode()
