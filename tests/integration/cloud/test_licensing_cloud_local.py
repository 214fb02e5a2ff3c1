"""Licensing end to end on loopback: cloud-local runs the license server (its own Chalice app and tables, a
development key pair) and gives the cloud its URL and keys; the cloud checks over real HTTP."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cloud import licensing
from cloud.runtime import Runtime
from cloud.settings import Settings
from sandbox.cloud_local import CloudLocal, CloudLocalConfig
from sandbox.cloud_local.__main__ import banner
from sandbox.cloud_local.license import LicenseService

pytestmark = [pytest.mark.integration]


def call(method: str, url: str, key: str, body: Any = None) -> httpx.Response:
    with httpx.Client(timeout=10) as http:
        return http.request(method, url, json=body, headers={"Authorization": f"Bearer {key}"})


async def test_licensing_through_cloud_local() -> None:
    service = LicenseService()
    async with CloudLocal(CloudLocalConfig(table_prefix="lic-it-"), services=[service]) as cloud:
        assert cloud.environment["LICENSE_SERVER_URL"] == service.url
        assert f"license   {service.url}" in banner(cloud)
        assert "LICENSE_SIGNING_KEY" not in banner(cloud)  # the private key never leaves the server's runtime
        rt = Runtime(Settings.from_env())
        now = datetime.now(UTC)

        # trial on first install, through real HTTP with the settings cloud-local gave the cloud
        ent = await asyncio.to_thread(licensing.on_install, rt, "portal-x", now)
        assert (ent.state, ent.plan) == ("trial", "trial") and ent.allows("recordings")

        # the vendor API: the backend key gets 403, an unknown key 401, the admin key in
        admin = f"{service.url}/v1/admin/licenses"
        assert (await asyncio.to_thread(call, "GET", admin, service.backend_key)).status_code == 403
        assert (await asyncio.to_thread(call, "GET", admin, "plk_" + "z" * 43)).status_code == 401
        listing = await asyncio.to_thread(call, "GET", admin, service.admin_key)
        assert [item["member_id"] for item in listing.json()["licenses"]] == ["portal-x"]

        # a replayed check is refused; an admin key cannot check
        body = {"member_id": "portal-x", "nonce": secrets.token_urlsafe(16), "sent_at": int(now.timestamp())}
        check = f"{service.url}/v1/check"
        assert (await asyncio.to_thread(call, "POST", check, service.backend_key, body)).status_code == 200
        replay = await asyncio.to_thread(call, "POST", check, service.backend_key, body)
        assert (replay.status_code, replay.json()["error"]["code"]) == (409, "replayed")
        assert (await asyncio.to_thread(call, "POST", check, service.admin_key, body)).status_code == 403

        # revoked: the current lease runs out, then the free tier
        revoked = await asyncio.to_thread(call, "POST", f"{admin}/portal-x/revoke", service.admin_key, {})
        assert revoked.json()["status"] == "revoked"
        ent = await asyncio.to_thread(licensing.check_license, rt, "portal-x", now)
        assert ent.state == "trial" and ent.lease_expires_at is not None
        after = licensing.entitlements(rt, "portal-x", ent.lease_expires_at)
        assert after.state == "restricted" and not after.allows("click_to_call")

        # another portal, then the server goes away: cached lease, grace, restricted
        ent = await asyncio.to_thread(licensing.on_install, rt, "portal-y", now)
        assert ent.state == "trial" and ent.lease_expires_at is not None
        await service.stop()
        expired = ent.lease_expires_at
        ent = await asyncio.to_thread(licensing.check_license, rt, "portal-y", expired)
        assert ent.state == "grace" and "ConnectError" in ent.reason
        assert licensing.entitlements(rt, "portal-y", expired + timedelta(hours=72)).state == "restricted"
