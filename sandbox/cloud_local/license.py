"""The license server next to the cloud in cloud-local, with a development key pair made for this run.

Started after the cloud (a :class:`~sandbox.cloud_local.stack.LocalService`): it creates the server's tables
in the same DynamoDB, serves ``license_server.app`` on its own port, creates a backend key and an admin key,
and gives the cloud ``LICENSE_SERVER_URL``, ``LICENSE_API_KEY`` and ``LICENSE_PUBLIC_KEYS``. The signing key
stays in this process (the server's runtime), never in the environment the banner prints.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

import license_server.app
from license_protocol import encode_private_key, encode_public_key, generate_signing_key
from license_server import api_keys
from license_server.runtime import Runtime
from license_server.settings import Settings
from license_server.tables import create_tables
from sandbox.cloud_local.rest import LocalRestServer

if TYPE_CHECKING:
    from sandbox.cloud_local.stack import CloudLocal

__all__ = ["LicenseService"]


class LicenseService:
    """``CloudLocal(config, services=[LicenseService()])``; then ``service.url``, ``service.admin_key``,
    ``service.backend_key``, ``service.runtime`` (the server's, for tests that change its clock or settings)."""

    name = "license"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        table_prefix: str = "pbxlink-license-local-",
        kid: str = "dev-1",
        lease_ttl_s: int | None = None,
        grace_s: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.table_prefix = table_prefix
        self.kid = kid
        self.lease_ttl_s = lease_ttl_s
        self.grace_s = grace_s
        self.admin_key = ""
        self.backend_key = ""
        self.public_keys = ""
        self._runtime: Runtime | None = None
        self._rest: LocalRestServer | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the license service is not started")
        return self._runtime

    @property
    def url(self) -> str:
        if self._rest is None:
            raise RuntimeError("the license service is not started")
        return self._rest.url

    async def start(self, cloud: CloudLocal) -> None:
        key = generate_signing_key()
        self.public_keys = f"{self.kid}:{encode_public_key(key.public_key())}"
        settings = Settings(
            table_prefix=self.table_prefix,
            region=cloud.config.region,
            dynamodb_endpoint=cloud.dynamodb_url,
            signing_key=f"{self.kid}:{encode_private_key(key)}",
        )
        if self.lease_ttl_s:
            settings = dataclasses.replace(settings, lease_ttl_s=self.lease_ttl_s)
        if self.grace_s:
            settings = dataclasses.replace(settings, grace_s=self.grace_s)
        self._runtime = runtime = Runtime(settings)
        await asyncio.to_thread(create_tables, runtime.dynamodb, self.table_prefix)
        _, self.backend_key = await asyncio.to_thread(api_keys.create_key, runtime, "backend", "cloud-local")
        _, self.admin_key = await asyncio.to_thread(api_keys.create_key, runtime, "admin", "cloud-local vendor")
        license_server.app.use_runtime(runtime)
        self._rest = LocalRestServer(license_server.app.app, self.host, self.port)
        self._rest.start()
        cloud.set_environment(
            {
                "LICENSE_SERVER_URL": self._rest.url,
                "LICENSE_API_KEY": self.backend_key,
                "LICENSE_PUBLIC_KEYS": self.public_keys,
                # for license-admin against the same tables
                "LICENSE_TABLE_PREFIX": self.table_prefix,
            }
        )

    async def stop(self) -> None:
        if self._rest is not None:
            await asyncio.to_thread(self._rest.stop)
            self._rest = None
        license_server.app.use_runtime(None)

    def urls(self) -> dict[str, str]:
        return {"license": self.url} if self._rest is not None else {}
