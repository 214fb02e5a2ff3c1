"""The product's cloud side on this machine with a Bitrix24 portal to talk to: the emulator (a portal with three
users), cloud-local (websocket API, REST, moto server, the license server, the CRM sweeper), and our app
installed into the portal the way Bitrix24 installs apps. Agents connect to it with
:func:`sandbox.cloud_local.agents.running_agent` and a token from :meth:`PortalStack.agent_token`.

One definition for the integration tests, the live tests on the Asterisk lab, the benchmark and the demo.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from cloud import clock, licensing
from cloud.calls.store import list_calls
from cloud.crm.pipeline import crm_status
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.tenants import store
from sandbox.bitrix24 import App, Emulator, EmulatorServer, User
from sandbox.bitrix24.portal import Call, Portal
from sandbox.bitrix24.testing import post_form
from sandbox.cloud_local import CloudLocal, CloudLocalConfig, CrmSweeper, LocalService
from sandbox.cloud_local.agents import issue_token
from sandbox.cloud_local.license import LicenseService
from sandbox.cloud_local.stack import AwsMode

__all__ = ["ANNA", "BORIS", "DOMAIN", "OWNER", "PortalStack", "card_users", "install_finished", "portal_stack", "until"]

DOMAIN = "acme.bitrix24.com"
CLIENT_ID, SECRET = "local.pbxlink.app", "local-app-secret"
#: The portal's users: the owner (no phone), Anna on extension 101, Boris on 102.
OWNER, ANNA, BORIS = 1, 11, 12


async def until(predicate: Callable[[], bool], timeout: float = 60.0, interval: float = 0.1) -> bool:
    """Poll ``predicate`` in a thread (it may do blocking I/O) until it holds; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(interval)
    return False


def install_finished(rt: Runtime, tenant: str) -> bool:
    """Has our install handler finished with this portal: the tenant stored, and its first license check (the
    handler's last step) given the portal its trial? Until then a click would be refused as unlicensed."""
    try:
        active = store.get_tenant(rt, tenant).active
    except Exception:
        return False  # the install handler has not run yet
    return active and licensing.entitlements(rt, tenant, clock.now()).state == "trial"


def card_users(call: Call, action: str) -> set[int]:
    """Users a registered call's card was shown to (``"show"``) or hidden from (``"hide"``)."""
    return {uid for _, what, uid in call.card_log if what == action}


def _pbx_call(external_call_id: str | None) -> str | None:
    """``<agent>:<linkedid>[:<leg>]`` → the Linkedid."""
    parts = (external_call_id or "").split(":")
    return parts[1] if len(parts) > 1 else None


@dataclass
class PortalStack:
    emulator: Emulator
    portal: Portal
    cloud: CloudLocal
    tenant: str
    rt: Runtime
    b24_url: str  # the emulator's base URL (its pages, its REST, its test endpoints)

    async def agent_token(self, name: str = "HQ") -> str:
        return (await issue_token(self.tenant, name))[1]

    def click(self, user: int, phone: str) -> str:
        """A user's click on a phone number in the portal (the emulator's page API); Bitrix24's CALL_ID."""
        answer = post_form(f"{self.b24_url}/_emulator/portals/{DOMAIN}/click", {"user_id": str(user), "phone": phone})
        if answer.status != 200:
            raise RuntimeError(f"the emulator refused the click: {answer.status} {answer.body!r}")
        return str(answer.json()["CALL_ID"])

    def call(self, call_id: str) -> Call:
        """The portal's call ``call_id`` (Bitrix24's CALL_ID)."""
        with self.portal.lock:
            return self.portal.calls[call_id]

    def crm_done(self, call_ids: Iterable[str]) -> bool:
        """Has every one of these PBX calls reached its final CRM state (done, or skipped by settings)?"""
        wanted = set(call_ids)
        calls = {c.call_id: c for c in list_calls(self.rt, self.tenant)}
        if not wanted <= set(calls):
            return False
        for call_id in wanted:
            item = crm_status(self.rt, self.tenant, calls[call_id].agent_id, call_id)
            if item is None or item.get("crm_status") not in ("done", "skipped"):
                return False
        return True

    def crm_item(self, call_id: str) -> dict[str, Any] | None:
        calls = {c.call_id: c for c in list_calls(self.rt, self.tenant)}
        return crm_status(self.rt, self.tenant, calls[call_id].agent_id, call_id) if call_id in calls else None

    def calls_agent(self, call_id: str) -> str:
        """The agent a PBX call came from ("" while the cloud does not have it)."""
        calls = {c.call_id: c for c in list_calls(self.rt, self.tenant)}
        return calls[call_id].agent_id if call_id in calls else ""

    def registrations(self, call_id: str) -> list[Call]:
        """The portal's registrations of one PBX call, leg by leg."""
        with self.portal.lock:
            mine = [c for c in self.portal.calls.values() if _pbx_call(c.external_call_id) == call_id]
        return sorted(mine, key=lambda c: c.external_call_id or "")

    def first_card_at(self) -> dict[str, float]:
        """PBX call (Linkedid) → when its first card opened (the emulator's wall clock)."""
        shown: dict[str, float] = {}
        with self.portal.lock:
            for call in self.portal.calls.values():
                pbx_call = _pbx_call(call.external_call_id)
                times = [at for at, what, _ in call.card_log if what == "show"]
                if pbx_call is not None and times:
                    shown[pbx_call] = min([*times, shown.get(pbx_call, times[0])])
        return shown


@asynccontextmanager
async def portal_stack(
    *,
    table_prefix: str = "stack-",
    concurrent_messages: bool = False,
    sweep_interval: float = 0.3,
    seed: int = 11,
    aws: AwsMode = "moto",
) -> AsyncIterator[PortalStack]:
    emulator = Emulator(seed=seed)
    with EmulatorServer(emulator) as b24:
        portal = emulator.add_portal(DOMAIN, burst=50, rate=2)
        portal.add_user(User(OWNER, "Olga", "Owner", admin=True))
        portal.add_user(User(ANNA, "Anna", "Petrova", phone_inner="101"))
        portal.add_user(User(BORIS, "Boris", "Ivanov", phone_inner="102"))
        config = CloudLocalConfig(
            table_prefix=table_prefix,
            concurrent_messages=concurrent_messages,
            aws=aws,
            extra_env={
                "B24_CLIENT_ID": CLIENT_ID,
                "B24_CLIENT_SECRET": SECRET,
                "B24_OAUTH_URL": f"{b24.url}/oauth/token/",
            },
        )
        services: list[LocalService] = [LicenseService(), CrmSweeper(interval=sweep_interval)]
        async with CloudLocal(config, services=services) as cloud:
            emulator.add_app(App(CLIENT_ID, SECRET, handler_url=f"{cloud.rest_url}/b24/install"))
            _, tokens = await asyncio.to_thread(emulator.install, DOMAIN, CLIENT_ID)
            tenant = str(tokens["member_id"])
            rt = Runtime(Settings.from_env())

            try:
                # installed, licensed, and its event handlers bound (click-to-call arrives as an event)
                if not await until(lambda: install_finished(rt, tenant) and bool(portal.bindings), timeout=30):
                    raise RuntimeError("the app did not install into the emulator portal within 30 s")
                yield PortalStack(emulator, portal, cloud, tenant, rt, b24.url)
            finally:
                rt.close()
