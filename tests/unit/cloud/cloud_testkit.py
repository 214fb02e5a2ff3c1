"""Shared fixtures for the cloud's tests, loaded as a plugin: ``pytest_plugins = ["cloud_testkit"]``.

Not a ``conftest.py``: the repository's test directories are not packages, and a second ``conftest`` module
would collide with ``tests/live/conftest.py`` under mypy. Builders and inspectors are in ``cloud_builders``.

* ``rt``: a :class:`cloud.runtime.Runtime` on moto (``mock_aws``) with every table created under ``test-``,
  also installed as the Chalice app's runtime.
* ``client``: ``chalice.test.Client`` over ``cloud.app.app`` with the ``dev`` stage of ``cloud/.chalice``.
* ``agent_id``: an agent of ``portal-a`` already connected on :data:`cloud_builders.CID`.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3  # type: ignore[import-untyped]
import pytest
from chalice.test import Client
from cloud_builders import CID, PROJECT_DIR, REGION
from moto import mock_aws

import cloud.app
from cloud.agents import connections, tokens
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.storage.tables import create_tables


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, a region, and no endpoint override leaking in from the developer's shell."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "WS_MGMT_ENDPOINT", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def rt() -> Iterator[Runtime]:
    with mock_aws():
        create_tables(boto3.client("dynamodb", region_name=REGION), "test-")
        runtime = Runtime(Settings(table_prefix="test-", region=REGION))
        cloud.app.use_runtime(runtime)
        try:
            yield runtime
        finally:
            cloud.app.use_runtime(None)


@pytest.fixture
def client(rt: Runtime) -> Client:
    return Client(cloud.app.app, stage_name="dev", project_dir=PROJECT_DIR)


@pytest.fixture
def agent_id(rt: Runtime) -> str:
    agent_id, _ = tokens.issue_token(rt, "portal-a", "Head office")
    connections.record(rt, "portal-a", agent_id, CID)
    return agent_id
