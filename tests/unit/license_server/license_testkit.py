"""Fixtures for the license server's tests, loaded as a plugin: ``pytest_plugins = ["license_testkit"]``.

* ``clock``: a :class:`license_builders.Clock` the server reads (tests move it).
* ``lic``: a :class:`license_server.runtime.Runtime` on moto (``mock_aws``), tables under ``lic-``, signing
  key ``k1``, installed as the app's runtime.
* ``server``: ``chalice.test.Client`` over ``license_server.app.app``.
* ``backend_key`` / ``admin_key``: API keys of each role.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chalice.test import Client
from license_builders import PROJECT_DIR, REGION, Clock, license_runtime
from moto import mock_aws

import license_server.app
from license_server import api_keys
from license_server.runtime import Runtime


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lic(clock: Clock) -> Iterator[Runtime]:
    with mock_aws():
        runtime = license_runtime(clock)
        license_server.app.use_runtime(runtime)
        try:
            yield runtime
        finally:
            license_server.app.use_runtime(None)


@pytest.fixture
def server(lic: Runtime) -> Client:
    return Client(license_server.app.app, stage_name="dev", project_dir=PROJECT_DIR)


@pytest.fixture
def backend_key(lic: Runtime) -> str:
    return api_keys.create_key(lic, "backend", "cloud prod")[1]


@pytest.fixture
def admin_key(lic: Runtime) -> str:
    return api_keys.create_key(lic, "admin", "vendor ops")[1]
