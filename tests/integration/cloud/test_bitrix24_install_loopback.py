"""The app installed into an emulated portal the way Bitrix24 does it, against ``cloud.app`` served by
cloud-local (REST on loopback, moto server): ONAPPINSTALL and the UI install page reach ``/b24/install``,
events get bound, a click reaches the event registry verified, a forged event gets 403, uninstall disables
the tenant and a reinstall keeps its settings."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import pytest

import cloud.app
from cloud.bitrix24 import events
from cloud.bitrix24.client import client_for
from cloud.bitrix24.errors import AuthorizationLost
from cloud.bitrix24.events import B24Event
from cloud.bitrix24.install import on_installed, remove_install_hook, repair_bindings
from cloud.errors import UnknownTenant
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.storage.dynamo import from_item, to_item
from cloud.tenants import store
from cloud.tenants.store import Tenant
from sandbox.bitrix24 import App, Emulator, EmulatorServer, User
from sandbox.bitrix24.portal import Portal
from sandbox.cloud_local import CloudLocal, CloudLocalConfig

pytestmark = [pytest.mark.integration]

CLIENT_ID = "local.pbxlink.1"
SECRET = "app-secret"
DOMAIN = "acme.bitrix24.com"
UI_DOMAIN = "beta.bitrix24.com"
BOUND = {"ONEXTERNALCALLSTART", "ONEXTERNALCALLBACKSTART", "ONAPPUNINSTALL"}
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def delivered(portal: Portal, event: str, count: int = 1) -> list[str]:
    """The delivery results of ``portal``'s events named ``event``, once there are ``count`` of them (the
    deliverer records each POST after its answer; a duplicated event is POSTed twice in a row)."""

    def results() -> list[str]:
        return [a for e in list(portal.events) if e.event == event for a in e.attempts]

    eventually(lambda: len(results()) >= count)
    return results()


def bindings(portal: Portal) -> set[tuple[str, str]]:
    return {(b.event, b.handler) for b in portal.bindings}


def scenario(emulator: Emulator, server: EmulatorServer, rt: Runtime, rest_url: str) -> None:
    received: list[tuple[Tenant, B24Event]] = []
    with events.event_handler("ONEXTERNALCALLSTART", lambda rt, tenant, event: received.append((tenant, event))):
        _scenario(emulator, server, rt, rest_url, received)


def _scenario(
    emulator: Emulator, server: EmulatorServer, rt: Runtime, rest_url: str, received: list[tuple[Tenant, B24Event]]
) -> None:
    emulator.add_app(App(CLIENT_ID, SECRET, handler_url=f"{rest_url}/b24/install"))
    portal = emulator.add_portal(DOMAIN)
    portal.add_user(User(2, "Anna", phone_inner="101"))
    member = portal.member_id

    # 1. Bitrix24 posts ONAPPINSTALL; we verify it at the OAuth server, store the tenant, bind our events.
    emulator.install(DOMAIN, CLIENT_ID)
    assert delivered(portal, "ONAPPINSTALL", 1) == ["200"]
    tenant = store.get_tenant(rt, member)
    assert tenant.active and tenant.domain == DOMAIN and tenant.client_endpoint == f"{server.url}/{DOMAIN}/rest/"
    assert bindings(portal) == {(event, f"{rest_url}/b24/events") for event in BOUND}

    # 2. A click in the CRM: ONEXTERNALCALLSTART reaches the registry, verified; the stored tokens work.
    call_id = emulator.click_to_call(DOMAIN, 2, "+7 926 123-45-67")
    assert delivered(portal, "ONEXTERNALCALLSTART") == ["200"]
    [(who, event)] = received
    assert (who.tenant, event.data["CALL_ID"], event.data["USER_ID"]) == (member, call_id, "2")
    finished = client_for(rt, member).call(
        "telephony.externalCall.finish", {"CALL_ID": call_id, "USER_ID": 2, "DURATION": 5}
    )
    assert finished["CALL_ID"] == call_id

    # 3. A forged event (right portal, wrong application token) is refused and changes nothing.
    forged = {
        "event": "ONAPPUNINSTALL",
        "auth[member_id]": member,
        "auth[application_token]": "0" * 32,
        "auth[domain]": DOMAIN,
    }
    with httpx.Client() as http:
        answer = http.post(f"{rest_url}/b24/events", content=urlencode(forged), headers=_FORM)
        assert answer.status_code == 403
        assert http.post(f"{rest_url}/b24/events", content="event=X&auth=1", headers=_FORM).status_code == 400
    assert store.get_tenant(rt, member).active

    # 4. Uninstall: ONAPPUNINSTALL disables the tenant and deletes its tokens.
    rt.dynamodb.update_item(
        TableName=rt.tables.tenants,
        Key=to_item({"tenant": member}),
        UpdateExpression="SET settings = :s",
        ExpressionAttributeValues=to_item({":s": {"line": "74951234567"}}),
    )
    emulator.uninstall(DOMAIN, CLIENT_ID)
    assert delivered(portal, "ONAPPUNINSTALL") == ["200"]
    assert not store.get_tenant(rt, member).active
    with pytest.raises(UnknownTenant):
        store.load_tokens(rt, member)
    with pytest.raises(AuthorizationLost):
        client_for(rt, member)

    # 5. Reinstall, its ONAPPINSTALL delivered twice: active again, events bound again (Bitrix24 dropped
    # them), settings kept; the second copy (its refresh token already used) is acknowledged, changes nothing.
    emulator.faults.duplicate_events = True
    emulator.install(DOMAIN, CLIENT_ID)
    assert delivered(portal, "ONAPPINSTALL", 3) == ["200", "200", "200"]
    emulator.faults.duplicate_events = False
    assert store.get_tenant(rt, member).active
    assert bindings(portal) == {(event, f"{rest_url}/b24/events") for event in BOUND}
    item = from_item(rt.dynamodb.get_item(TableName=rt.tables.tenants, Key=to_item({"tenant": member}))["Item"])
    assert item["settings"] == {"line": "74951234567"}

    # 6. The UI install form (an app with a page): answered with installFinish, then events flow.
    emulator.apps[CLIENT_ID].has_ui = True
    beta = emulator.add_portal(UI_DOMAIN)
    beta.add_user(User(2, "Boris", phone_inner="201"))
    emulator.install(UI_DOMAIN, CLIENT_ID)
    assert delivered(beta, "INSTALL_PAGE") == ["200"]
    assert store.get_tenant(rt, beta.member_id).domain == UI_DOMAIN
    emulator.install_finish(UI_DOMAIN, CLIENT_ID)  # what the page's BX24.installFinish() does
    emulator.click_to_call(UI_DOMAIN, 2, "+7 926 000-00-00")
    assert delivered(beta, "ONEXTERNALCALLSTART") == ["200"]
    assert [who.tenant for who, _ in received] == [member, beta.member_id]


async def on_cloud_local(prefix: str, run: Callable[[Emulator, EmulatorServer, Runtime, str], None]) -> None:
    """``run(emulator, its server, the cloud's runtime, cloud-local's REST URL)`` in a thread, with cloud.app
    configured for the emulator's OAuth server and app."""
    emulator = Emulator()
    with EmulatorServer(emulator) as server:
        async with CloudLocal(CloudLocalConfig(table_prefix=prefix)) as cloud_local:
            settings = dataclasses.replace(
                Settings.from_env(),
                b24_client_id=CLIENT_ID,
                b24_client_secret=SECRET,
                b24_oauth_url=f"{server.url}/oauth/token/",
                public_base_url=cloud_local.rest_url,
            )
            rt = Runtime(settings)
            cloud.app.use_runtime(rt)
            try:
                await asyncio.to_thread(run, emulator, server, rt, cloud_local.rest_url)
            finally:
                cloud.app.use_runtime(None)
                rt.close()


async def test_the_app_is_installed_used_and_uninstalled_like_on_bitrix24() -> None:
    await on_cloud_local("b24it-", scenario)


def failed_binding_scenario(emulator: Emulator, rt: Runtime, rest_url: str) -> None:
    emulator.add_app(App(CLIENT_ID, SECRET, handler_url=f"{rest_url}/b24/install"))
    portal = emulator.add_portal(DOMAIN)
    portal.add_user(User(2, "Anna", phone_inner="101"))
    member = portal.member_id
    hooked: list[str] = []

    def hook(rt: Runtime, tenant: Tenant) -> None:
        hooked.append(tenant.tenant)

    # 1. Bitrix24 cannot bind events during the install: stored, install hooks run (the trial starts), the
    # failure recorded and answered (Bitrix24 only logs it and never sends ONAPPINSTALL again)
    emulator.faults.failing_methods = ("event.bind",)
    on_installed(hook)
    try:
        emulator.install(DOMAIN, CLIENT_ID)
        assert delivered(portal, "ONAPPINSTALL") == ["502"]
    finally:
        remove_install_hook(hook)
    tenant = store.get_tenant(rt, member)
    assert tenant.active and tenant.events_bound_at is None and "INTERNAL_SERVER_ERROR" in tenant.bind_error
    assert hooked == [member] and bindings(portal) == set()

    # 2. The repair schedule: still failing, it records why; once Bitrix24 takes it, bound, then left alone
    assert "INTERNAL_SERVER_ERROR" in repair_bindings(rt)[member]
    emulator.faults.failing_methods = ()
    assert repair_bindings(rt) == {member: "bound"}
    assert bindings(portal) == {(event, f"{rest_url}/b24/events") for event in BOUND}
    tenant = store.get_tenant(rt, member)
    assert tenant.events_bound_at is not None and tenant.bind_error == ""
    assert repair_bindings(rt) == {}

    # 3. Click-to-call events now arrive
    emulator.click_to_call(DOMAIN, 2, "+7 926 123-45-67")
    assert delivered(portal, "ONEXTERNALCALLSTART") == ["200"]

    # 4. A reinstall drops Bitrix24's bindings: the record is cleared and the install binds again
    emulator.install(DOMAIN, CLIENT_ID)
    assert delivered(portal, "ONAPPINSTALL", 2) == ["502", "200"]
    assert store.get_tenant(rt, member).events_bound_at is not None


async def test_events_bound_late_when_bitrix24_refused_them_at_install() -> None:
    def run(emulator: Emulator, server: EmulatorServer, rt: Runtime, rest_url: str) -> None:
        with events.event_handler("ONEXTERNALCALLSTART", lambda rt, tenant, event: None):
            failed_binding_scenario(emulator, rt, rest_url)

    await on_cloud_local("b24bind-", run)
