"""The license server, in-process, for the cloud's licensing tests: its real Chalice app behind an ``httpx``
transport (no sockets), on the same moto as the cloud's tables.

``trial_from_now(rt, tenant)``: a tenant on its trial from the wall clock's now, for code under test that reads it.
``LicenseServerDouble(clock)`` inside ``mock_aws`` → ``.client`` (a :class:`cloud.licensing.client.LicenseClient`
with a backend key), ``.down`` (the transport raises ``ConnectError``), ``.admin`` (the server's runtime).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import httpx
from chalice.test import Client

import license_server.app
from cloud import licensing
from cloud.licensing.client import LicenseClient
from cloud.runtime import Runtime as CloudRuntime
from license_protocol import encode_private_key, format_public_keys, generate_signing_key
from license_server import api_keys
from license_server.runtime import Runtime as LicenseRuntime
from license_server.settings import Settings as LicenseSettings
from license_server.tables import create_tables

REGION = "us-east-1"
START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SIGNING = generate_signing_key()
PUBLIC_KEYS = {"k1": SIGNING.public_key()}
PUBLIC_KEYS_ENV = format_public_keys(PUBLIC_KEYS)
_PROJECT_DIR = str(Path(license_server.app.__file__).resolve().parent)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class ChaliceTransport(httpx.BaseTransport):
    """Hands each request to a Chalice app's local gateway (``chalice.test.Client``), unless ``down``."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.down = False
        self.requests: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        body = request.read()
        self.requests.append(body)
        response = self.client.http.request(
            request.method, request.url.raw_path.decode(), headers=dict(request.headers), body=body
        )
        return httpx.Response(response.status_code, headers=response.headers, content=response.body)


class LicenseServerDouble:
    def __init__(self, clock: Clock, prefix: str = "lic-") -> None:
        create_tables(boto3.client("dynamodb", region_name=REGION), prefix)
        settings = LicenseSettings(table_prefix=prefix, region=REGION, signing_key=f"k1:{encode_private_key(SIGNING)}")
        self.admin = LicenseRuntime(settings, clock=clock)
        license_server.app.use_runtime(self.admin)
        _, self.backend_key = api_keys.create_key(self.admin, "backend", "cloud under test")
        self.transport = ChaliceTransport(Client(license_server.app.app, stage_name="dev", project_dir=_PROJECT_DIR))
        self.http = httpx.Client(transport=self.transport)
        self.client = LicenseClient("http://license.test", self.backend_key, PUBLIC_KEYS, http=self.http)

    @property
    def down(self) -> bool:
        return self.transport.down

    @down.setter
    def down(self, value: bool) -> None:
        self.transport.down = value

    def close(self) -> None:
        self.http.close()
        license_server.app.use_runtime(None)


def trial_from_now(rt: CloudRuntime, tenant: str) -> LicenseServerDouble:
    """``tenant`` on its trial (every feature) from the wall clock's now, as right after its install. For tests of
    code that reads the wall clock (an agent's messages through ``$default``): a trial started at a fixed date
    would have expired by the time the suite runs. Close the double afterwards."""
    now = datetime.now(UTC)
    double = LicenseServerDouble(Clock(now))
    licensing.on_install(rt, tenant, now, client=double.client)
    return double
