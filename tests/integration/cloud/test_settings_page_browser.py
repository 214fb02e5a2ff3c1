"""The settings page in a real browser (Debian's headless Chromium driven by Playwright) against cloud-local and
the Bitrix24 emulator: the app is installed the way Bitrix24 installs it, the page is opened the way Bitrix24
opens it (a form POSTed into an iframe, with the user's AUTH_ID), and an admin sees the trial license, creates
an agent token, runs an agent with it and sees it connect, maps an extension, changes settings, meets a refused
one, and reads what the product did for a call. A user who is not an admin sees the status only.

No BX24 library here (its host is unreachable, and the page must work without it): requests for it are aborted.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.async_api import Browser, Dialog, FrameLocator, Page, async_playwright, expect

from cloud.crm.settings import CrmSettings, LineSettings, load_settings
from cloud.reconcile import on_reconcile_report
from cloud.webapp.i18n import text
from cloud.webapp.status import agent_views
from edge_agent.trace import read_trace
from sandbox.ami_server.server import FakeAmiServer, UserSpec
from sandbox.browser import BrowserMissing, launch_chromium
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.portal_stack import ANNA, CLIENT_ID, DOMAIN, OWNER, PortalStack, portal_stack, until
from wire_protocol.messages import ReconcileCall, ReconcileReport

pytestmark = [pytest.mark.integration]

TRACES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"
OLGA = OWNER
WAIT_MS = 15_000


@dataclass
class Stack:
    """The portal stack and a browser to open the app in."""

    base: PortalStack
    browser: Browser
    script_errors: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    async def open_app(self, user_id: int, lang: str = "en", *, bx24: bool = False) -> tuple[Page, FrameLocator]:
        """What Bitrix24 does when a user opens the app: POST AUTH_ID & co. into the app's iframe. ``bx24``: the
        frame has a BX24 stand-in whose ``refreshAuth`` gets a fresh token from the emulator."""
        tokens = self.emulator.issue(DOMAIN, CLIENT_ID, user_id)
        query = urlencode({"DOMAIN": DOMAIN, "PROTOCOL": "1", "LANG": lang, "APP_SID": "a1b2c3"})
        form = {
            "AUTH_ID": tokens["access_token"],
            "AUTH_EXPIRES": "3600",
            "REFRESH_ID": tokens["refresh_token"],
            "SERVER_ENDPOINT": "https://oauth.bitrix.info/rest/",
            "member_id": self.tenant,
            "status": "L",
            "PLACEMENT": "DEFAULT",
            "PLACEMENT_OPTIONS": "{}",
        }
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(str(v))}">' for k, v in form.items()
        )
        portal = (
            "<!DOCTYPE html><html><body><h1>Bitrix24</h1>"
            f'<form id="open" method="post" target="app" action="{self.cloud.rest_url}/b24/app?{query}">{inputs}</form>'
            '<iframe name="app" id="app" style="width:1200px;height:900px"></iframe>'
            "<script>document.getElementById('open').submit();</script></body></html>"
        )
        page = await self.browser.new_page()
        page.on("pageerror", lambda error: self.script_errors.append(str(error)))
        if bx24:
            fresh = lambda: str(self.emulator.issue(DOMAIN, CLIENT_ID, user_id)["access_token"])  # noqa: E731
            await page.expose_function("pbxlinkFreshToken", fresh)
            await page.add_init_script(BX24_STAND_IN)
        await page.route("**/api.bitrix24.com/**", lambda route: route.abort())
        await page.set_content(portal)
        frame = page.frame_locator("#app")
        await expect(frame.locator("main#app")).to_have_attribute("data-state", "ready", timeout=WAIT_MS)
        return page, frame


#: What the page uses of Bitrix24's BX24 library (DOC sdk/bx24-js-sdk: init, fitWindow, refreshAuth), counting calls.
BX24_STAND_IN = """
window.BX24 = {
  fits: 0, refreshes: 0,
  init: function (callback) { callback(); },
  fitWindow: function () { window.BX24.fits += 1; },
  refreshAuth: function (callback) {
    window.BX24.refreshes += 1;
    window.pbxlinkFreshToken().then(function (token) { callback({ access_token: token }); });
  }
};
"""


def expire_sessions(stack: Stack) -> None:
    """Every Bitrix24 token issued so far expires, and the cloud forgets what it verified."""
    stack.emulator.expire_all_tokens()
    table = stack.rt.tables.web_sessions
    for item in stack.rt.dynamodb.scan(TableName=table)["Items"]:
        stack.rt.dynamodb.delete_item(TableName=table, Key={"pk": item["pk"]})


@asynccontextmanager
async def whole_stack() -> AsyncIterator[Stack]:
    # installed the way Bitrix24 installs an API-only app: ONAPPINSTALL posted to /b24/install
    async with portal_stack(table_prefix="page-", seed=5) as base, async_playwright() as playwright:
        try:
            browser = await launch_chromium(playwright)
        except BrowserMissing as exc:
            pytest.fail(str(exc))
        try:
            yield Stack(base, browser)
        finally:
            await browser.close()


async def agent_state(frame: FrameLocator, name: str) -> str | None:
    await frame.locator('[data-tab="status"]').click()
    row = frame.locator("#status-agents tr", has_text=name)
    try:
        await expect(row).to_have_count(1, timeout=3_000)
    except AssertionError:
        return None
    return await row.get_attribute("data-state")


async def test_an_admin_connects_a_pbx_maps_extensions_and_changes_settings(tmp_path: Path) -> None:
    async with whole_stack() as stack:
        page, frame = await stack.open_app(OLGA)
        await expect(frame.locator("nav [data-tab]")).to_have_count(5)
        # the install started the portal's trial at the license server (cloud-local runs one)
        await expect(frame.locator("#license")).to_have_attribute("data-state", "trial")
        await expect(frame.locator("#license")).to_contain_text("trial")

        # -- a token, shown once with the command to paste on the PBX host
        await frame.locator('[data-tab="agents"]').click()
        await frame.locator("#token-name").fill("Head office")
        await frame.locator("#token-create").click()
        await expect(frame.locator("#token-value")).to_have_text(
            re.compile(r"^pbxl_[A-Za-z0-9_-]{43}$"), timeout=WAIT_MS
        )
        token = (await frame.locator("#token-value").inner_text()).strip()
        command = (await frame.locator("#token-command").inner_text()).strip()
        assert command == f"EDGE_CLOUD_URL={stack.cloud.ws_url} EDGE_TOKEN={token} edge-agent run"
        await expect(frame.locator("#agents-table tr", has_text="Head office")).to_have_attribute(
            "data-state", "offline"
        )

        # -- the agent runs with that token: the page sees it connect
        async with FakeAmiServer({"edge": UserSpec("edge-secret")}) as ami:
            login = AmiLogin("127.0.0.1", ami.port, "edge", "edge-secret")
            async with running_agent(login, stack.cloud.ws_url, token, tmp_path) as agent:
                for _ in range(20):
                    if await agent_state(frame, "Head office") == "online":
                        break
                    await asyncio.sleep(0.5)
                row = frame.locator("#status-agents tr", has_text="Head office")
                await expect(row).to_have_attribute("data-state", "online")
                await expect(row.locator(".state")).to_have_text("connected")

                # -- the agent's last PBX <-> CRM check: one call the cloud lacked, asked for again
                (view,) = [v for v in agent_views(stack.rt, stack.tenant) if v["name"] == "Head office"]
                moment = datetime.now(UTC)
                lacking = ReconcileCall(call_id="pbx-1.1", ended_at=moment, direction="inbound", result="missed")
                check = ReconcileReport(check_id="20261126T120000Z-abcdef", since=moment, until=moment, calls=[lacking])
                on_reconcile_report(stack.rt, stack.tenant, view["agent_id"], check, moment)
                await agent_state(frame, "Head office")
                await expect(row.locator(".check")).to_contain_text(
                    "1 calls on the PBX, 0 in the CRM, 1 missing, sent again"
                )

                # -- extension 102 goes to Olga instead of Boris (UF_PHONE_INNER)
                await frame.locator('[data-tab="extensions"]').click()
                ext = frame.locator('#extensions-table tr[data-extension="102"]')
                await expect(ext).to_contain_text("Bitrix24 profile", timeout=WAIT_MS)
                await ext.locator("select").select_option(str(OLGA))
                await frame.locator("#extensions-save").click()
                await expect(frame.locator('#extensions-table tr[data-extension="102"]')).to_contain_text(
                    "set here", timeout=WAIT_MS
                )
                assert load_settings(stack.rt, stack.tenant).extension_overrides == {"102": OLGA}

                # -- settings: one valid change saved, one invalid refused with the field named
                await frame.locator('[data-tab="settings"]').click()
                internal = frame.locator('[data-path="register_internal"] input')
                await expect(internal).not_to_be_checked(timeout=WAIT_MS)
                await internal.check()
                prefix = frame.locator('[data-path="click_to_call.originate.prefix"] input')
                await prefix.fill("9")
                await frame.locator('[data-path="card_mode"] select').select_option("answer")
                lines = frame.locator('fieldset[data-path="lines"]')
                await lines.locator("button.add").click()
                line = lines.locator("tbody tr").last
                await line.locator("td:nth-child(1) input").fill("+74951234567")
                await line.locator("td:nth-child(2) input").fill("Sales")
                await line.locator("td:nth-child(3) select").select_option(str(ANNA))
                await frame.locator("#settings-save").click()
                await expect(frame.locator("#settings-message")).to_have_text("Saved.", timeout=WAIT_MS)
                # every other field went through the form and came back as it was
                expected = CrmSettings().model_dump()
                expected |= {"register_internal": True, "card_mode": "answer", "extension_overrides": {"102": OLGA}}
                expected["click_to_call"]["originate"]["prefix"] = "9"
                expected["lines"] = {"+74951234567": LineSettings(name="Sales", default_owner=ANNA).model_dump()}
                assert load_settings(stack.rt, stack.tenant).model_dump() == expected

                await prefix.fill("nine")
                await frame.locator("#settings-save").click()
                error = frame.locator('.field-error[data-error-path="click_to_call.originate.prefix"]')
                await expect(error).to_be_visible(timeout=WAIT_MS)
                await expect(frame.locator("#settings-message")).to_contain_text("Not saved")
                assert load_settings(stack.rt, stack.tenant).click_to_call.originate.prefix == "9"

                # -- a call goes through, and the page says what was done in Bitrix24 for it
                trace = read_trace(TRACES / "inbound_queue_answered.jsonl")
                call_id = next(m["Linkedid"] for m in trace if m.get("Event") == "Newchannel")
                await ami.play(trace, speed=None)
                assert await until(lambda: stack.crm_done({call_id}))
                await frame.locator('[data-tab="calls"]').click()
                call = frame.locator(f'details.call[data-call-id="{call_id}"]')
                await expect(call).to_contain_text("done", timeout=WAIT_MS)
                await call.locator("summary").click()
                await expect(call.locator("table.legs code").first).to_contain_text("externalCall.")

                # -- the token is revoked: the agent is cut off at once and refused when it comes back
                async def confirm(dialog: Dialog) -> None:
                    await dialog.accept()

                page.on("dialog", confirm)
                await frame.locator('[data-tab="agents"]').click()
                await frame.locator("#agents-table tr", has_text="Head office").locator("button.danger").click()
                await expect(frame.locator("#tokens-message")).to_have_text("Token revoked.", timeout=WAIT_MS)
                revoked = frame.locator("#agents-table tr", has_text="Head office")
                await expect(revoked).to_have_attribute("data-state", "revoked")
                link = agent.link
                assert link is not None
                assert await until(lambda: link.token_refusals >= 1, timeout=30)
        await page.close()
        assert stack.script_errors == []


async def test_a_user_who_is_not_an_admin_sees_the_status_only_in_russian() -> None:
    async with whole_stack() as stack:
        page, frame = await stack.open_app(ANNA, lang="ru")
        await expect(frame.locator("#readonly")).to_be_visible()
        await expect(frame.locator("nav [data-tab]")).to_have_count(1)
        await expect(frame.locator('[data-tab="status"]')).to_have_text(text("ru", "tab.status"))
        assert await frame.locator("[data-tab=settings]").count() == 0
        config = json.loads(await frame.locator("#pbxlink-config").text_content() or "{}")
        assert config["viewer"]["admin"] is False

        # outside Bitrix24's frame script (no BX24), an expired session asks the user to reload
        await asyncio.to_thread(expire_sessions, stack)
        await frame.locator('[data-tab="status"]').click()
        expired = frame.locator("#panel-status .message.error")
        await expect(expired).to_have_text(text("ru", "error.session"), timeout=WAIT_MS)
        await page.close()
        assert stack.script_errors == []


async def test_inside_bitrix24_an_expired_session_is_renewed_through_bx24() -> None:
    async with whole_stack() as stack:
        page, frame = await stack.open_app(OLGA, bx24=True)
        app = page.frame(name="app")
        assert app is not None
        await expect(frame.locator("#license")).to_be_visible(timeout=WAIT_MS)
        assert await app.evaluate("window.BX24.fits") > 0  # the frame is fitted to the page
        await asyncio.to_thread(expire_sessions, stack)
        await frame.locator('[data-tab="settings"]').click()
        await expect(frame.locator("#settings-form")).to_be_visible(timeout=WAIT_MS)
        assert await app.evaluate("window.BX24.refreshes") == 1  # 401 token_expired → refreshAuth → retried
        assert await frame.locator("#panel-settings .message.error").count() == 0
        await page.close()
        assert stack.script_errors == []


def test_chromium_is_there() -> None:
    """The set-up installs it (``make install`` as root, ``.ci/run``); its absence is a failure, not a skip."""
    from sandbox.browser import chromium_path

    assert Path(chromium_path()).exists()
