"""A real edge agent running against cloud-local, for integration tests, the live tier and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cloud.agents import tokens
from cloud.runtime import Runtime
from cloud.settings import Settings
from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.link.client import LinkOptions

__all__ = ["AmiLogin", "issue_token", "running_agent"]


@dataclass(frozen=True)
class AmiLogin:
    host: str
    port: int
    username: str
    secret: str


def runtime() -> Runtime:
    """The cloud's runtime as cloud-local configured it (environment set by ``CloudLocal``)."""
    return Runtime(Settings.from_env())


async def issue_token(tenant: str, name: str) -> tuple[str, str]:
    """(agent id, token) of a new agent of ``tenant`` in the running cloud-local."""
    return await asyncio.to_thread(tokens.issue_token, runtime(), tenant, name)


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the agent exposes no event for these
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_agent(
    ami: AmiLogin,
    cloud_url: str,
    token: str,
    data_dir: str | Path,
    *,
    timeout: float = 30.0,
    extra_env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Agent]:
    """An ``Agent`` (what ``edge-agent run`` runs) welcomed by the cloud and logged in to AMI; stopped on exit."""
    environ = {
        "EDGE_AMI_HOST": ami.host,
        "EDGE_AMI_PORT": str(ami.port),
        "EDGE_AMI_USER": ami.username,
        "EDGE_AMI_SECRET": ami.secret,
        "EDGE_CLOUD_URL": cloud_url,
        "EDGE_TOKEN": token,
        "EDGE_DATA_DIR": str(data_dir),
        **(extra_env or {}),
    }
    agent = Agent(load_config(environ, need_cloud=True), options=LinkOptions(reconnect_initial=0.1), clock=clock)
    task = asyncio.create_task(agent.run())
    try:
        await _until(lambda: task.done() or (agent.link is not None and agent.link.protocol.established), timeout)
        await _until(
            lambda: task.done() or (agent.connector is not None and agent.connector.connected.is_set()), timeout
        )
        if task.done():
            task.result()  # it stopped: say why
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)
