"""Two portals on one cloud, over real sockets (docs/reliability.md, "Hostile input"): the emulator with portals
A (acme) and B (beta) both running our app, cloud-local (local API Gateway, REST, moto server, license server).

An agent holding A's token tries to reach B: events with B's call ids, a result for B's click-to-call command,
recording requests and results for B's call; none of it changes anything of B's. The settings API with A's user
token aimed at B is refused. Forged events (another portal's application token, an unknown portal) and a forged
install are refused. Malformed and oversized frames get an ``error`` and the connection keeps working.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from cloud import clock, licensing
from cloud.agents.commands import get_command
from cloud.calls.store import get_call, list_calls
from cloud.licensing.store import load_lease, save_lease
from cloud.recordings.store import get_recording, object_key
from cloud.tenants import store
from sandbox.bitrix24 import User
from sandbox.cloud_local.agents import issue_token
from sandbox.portal_stack import ANNA, CLIENT_ID, OWNER, PortalStack, install_finished, portal_stack, until
from wire_protocol.call_events import CallEnded, CallEvent, CallStarted, CallSummary
from wire_protocol.messages import (
    MAX_MESSAGE_BYTES,
    Ack,
    CallEventsBatch,
    CloudMessage,
    Command,
    CommandResult,
    ErrorMessage,
    Hello,
    RecordingReady,
    RecordingResult,
    SequencedEvent,
    UploadRecording,
    Welcome,
    decode_cloud_message,
    encode,
)

pytestmark = [pytest.mark.integration]

B_DOMAIN = "beta.bitrix24.com"
AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Two:
    stack: PortalStack
    a: str  # member ids
    b: str

    def app_token(self, domain: str) -> str:
        return self.stack.emulator.portal(domain).installations[CLIENT_ID].application_token


@asynccontextmanager
async def two_portals() -> AsyncIterator[Two]:
    async with portal_stack(table_prefix="iso-") as stack:
        beta = stack.emulator.add_portal(B_DOMAIN, burst=50, rate=2)
        beta.add_user(User(OWNER, "Bea", "Owner", admin=True))
        beta.add_user(User(ANNA, "Bob", "Beta", phone_inner="101"))
        _, tokens = await asyncio.to_thread(stack.emulator.install, B_DOMAIN, CLIENT_ID)
        b = str(tokens["member_id"])
        if not await until(lambda: install_finished(stack.rt, b) and bool(beta.bindings), timeout=30):
            raise RuntimeError("the app did not install into the second portal within 30 s")
        yield Two(stack, stack.tenant, b)


async def recv(ws: ClientConnection, timeout: float = 20) -> CloudMessage:
    return decode_cloud_message(await asyncio.wait_for(ws.recv(), timeout))


async def hello(ws: ClientConnection) -> Welcome:
    await ws.send(encode(Hello(agent_version="0-test", capabilities=["originate"])))
    welcome = await recv(ws)
    assert isinstance(welcome, Welcome)
    await recv(ws)  # settings
    return welcome


def inbound(call_id: str, number: str) -> list[CallEvent]:
    summary = CallSummary(
        call_id=call_id,
        direction="inbound",
        external_number=number,
        line=None,
        caller_extension=None,
        rang=[],
        answered_by=None,
        transfers=[],
        final_extension=None,
        result="missed",
        started_at=AT,
        answered_at=None,
        ended_at=AT,
        talk_seconds=0,
        recording=None,
        command_id=None,
    )
    started = CallStarted(
        call_id=call_id, seq=1, at=AT, direction="inbound", external_number=number, line=None, caller_extension=None
    )
    return [started, CallEnded(call_id=call_id, seq=2, at=AT, summary=summary)]


def batch(events: list[CallEvent], after: int) -> str:
    items = [SequencedEvent(seq=after + n, event=e) for n, e in enumerate(events, start=1)]
    return encode(CallEventsBatch(events=items, after_seq=after))


async def acked(ws: ClientConnection, up_to: int) -> None:
    while True:
        message = await recv(ws)
        if isinstance(message, Ack) and message.up_to_seq >= up_to:
            return


def snapshot(two: Two, tenant: str) -> list[tuple[str, str, str, Any]]:
    return sorted((c.agent_id, c.call_id, c.status, c.applied) for c in list_calls(two.stack.rt, tenant))


async def test_an_agent_of_one_tenant_cannot_reach_another_tenants_calls_commands_or_recordings() -> None:
    async with two_portals() as two:
        rt = two.stack.rt
        agent_b, token_b = await issue_token(two.b, "B office")
        agent_a, token_a = await issue_token(two.a, "A office")
        url = two.stack.cloud.ws_url
        async with (
            connect(url, additional_headers={"Authorization": f"Bearer {token_b}"}) as ws_b,
            connect(url, additional_headers={"Authorization": f"Bearer {token_a}"}) as ws_a,
        ):
            assert (await hello(ws_b)).tenant == two.b
            assert (await hello(ws_a)).tenant == two.a

            # B's own call, stored and acked; then A sends events under the very same call id
            await ws_b.send(batch(inbound("pbx-100.1", "79260000001"), after=0))
            await acked(ws_b, 2)
            b_before = snapshot(two, two.b)
            await ws_a.send(batch(inbound("pbx-100.1", "79269999999"), after=0))
            await acked(ws_a, 2)
            assert snapshot(two, two.b) == b_before  # B's call untouched ...
            mine = get_call(rt, two.a, agent_a, "pbx-100.1")
            assert mine is not None and mine.status == "ended"  # ... A's copy is A's own
            b_call = get_call(rt, two.b, agent_b, "pbx-100.1")
            assert b_call is not None and b_call.summary is not None
            assert b_call.summary.external_number == "79260000001"

            # a click on B's portal: the command goes to B's agent only
            call_id = await asyncio.to_thread(two.stack.emulator.click_to_call, B_DOMAIN, ANNA, "79261234567")
            assert call_id is not None
            command = await recv(ws_b)
            assert isinstance(command, Command)
            before = get_command(rt, two.b, command.command_id)
            assert before is not None and before["agent_id"] == agent_b and before.get("status") != "done"
            # A claims B's command failed: stored, if at all, under A; B's command and B's card untouched
            forged = CommandResult(command_id=command.command_id, ok=False, code="busy", message="forged")
            await ws_a.send(encode(forged))
            reply = await recv(ws_a)
            assert isinstance(reply, Ack | ErrorMessage)
            await asyncio.sleep(1)  # what a wrongly applied result would have done, it would have done by now
            assert get_command(rt, two.b, command.command_id) == before
            with two.stack.emulator.portal(B_DOMAIN).lock:
                card = two.stack.emulator.portal(B_DOMAIN).calls[call_id]
                assert not card.finished, "A's forged result finished B's click-to-call"

            # recordings: A asks for an upload URL for a call only B has, then reports B's object as uploaded
            await ws_a.send(encode(RecordingReady(call_id="pbx-100.1", size=1000)))
            upload = await recv(ws_a)
            assert isinstance(upload, UploadRecording)
            if upload.key is not None:
                assert upload.key.startswith(f"{two.a}/"), upload.key  # never a key under B's prefix
            b_key = object_key(two.b, agent_b, "pbx-100.1")
            await ws_a.send(encode(RecordingResult(call_id="pbx-100.1", ok=True, key=b_key, size=10, sha256="0" * 64)))
            while not isinstance(message := await recv(ws_a), ErrorMessage) and message.type != "recording_ack":
                pass
            assert get_recording(rt, two.b, agent_b, "pbx-100.1") is None
            # and A's agent never saw B's command
            with pytest.raises(TimeoutError):
                while True:
                    assert not isinstance(await recv(ws_a, timeout=1), Command)


async def test_malformed_and_oversized_frames_are_refused_and_the_connection_keeps_working() -> None:
    async with two_portals() as two:
        _, token = await issue_token(two.a, "A office")
        async with connect(two.stack.cloud.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await hello(ws)
            oversized = '{"type": "heartbeat", "sent_at": "2026-11-26T09:00:00Z", "pad": "' + "x" * MAX_MESSAGE_BYTES
            # (Binary frames and frames over 32 KiB never reach the cloud: API Gateway itself closes the connection,
            # 1003 and 1009, as sandbox/apigw_local does; the agent's encoder sends neither.)
            garbage: list[tuple[str, str]] = [
                ("not json", "bad_json"),
                ('{"type": "nope"}', "unknown_type"),
                ('{"type": "heartbeat"}', "invalid_message"),
                ('{"type": "heartbeat", "v": 2, "sent_at": "2026-11-26T09:00:00Z"}', "unsupported_version"),
                ('{"type": "hello", "agent_version": "1", "outbox_depth": ' + "9" * 5000 + "}", "invalid_message"),
                ("[" * 20_000, "bad_json"),
                (oversized[: 32 * 1024 - 10] + '"}', "too_large"),  # over our 32,000 bytes, under API GW's 32 KiB
            ]
            for frame, code in garbage:
                await ws.send(frame)
                error = await recv(ws)
                assert isinstance(error, ErrorMessage) and error.code == code, (frame[:40], error)
            await ws.send(batch(inbound("pbx-200.1", "79260000002"), after=0))  # a good message right after
            await acked(ws, 2)


async def test_forged_events_installs_and_cross_portal_sessions_are_refused() -> None:
    async with two_portals() as two:
        rest = two.stack.cloud.rest_url
        token_a, token_b = two.app_token(two.stack.portal.domain), two.app_token(B_DOMAIN)

        def event(member: str, token: str, domain: str) -> dict[str, str]:
            return {
                "event": "ONEXTERNALCALLSTART",
                "data[CALL_ID]": "externalCall.forged",
                "data[USER_ID]": str(ANNA),
                "data[PHONE_NUMBER]": "79261234567",
                "auth[domain]": domain,
                "auth[member_id]": member,
                "auth[application_token]": token,
            }

        async with httpx.AsyncClient(timeout=20) as http:
            cases = [
                (event(two.b, token_a, B_DOMAIN), 403),  # B's portal, A's application token
                (event(two.a, token_b, two.stack.portal.domain), 403),  # A's portal, B's token
                (event(two.a, "0" * 32, "attacker.example"), 403),  # a guessed token from elsewhere
                (event("f" * 32, token_a, "attacker.example"), 403),  # a portal that never installed us
                (event(two.b, token_a, "attacker.example") | {"event": "ONAPPUNINSTALL"}, 403),
            ]
            for body, status in cases:
                answer = await http.post(f"{rest}/b24/events", content=urlencode(body), headers=FORM)
                assert answer.status_code == status, (body, answer.text)
                assert json.loads(answer.text)["error"] == "forbidden"
            assert store.get_tenant(two.stack.rt, two.b).active  # the forged uninstall changed nothing

            # a forged ONAPPINSTALL claiming A's portal with B's (genuine) refresh token and a new application token
            grant = await asyncio.to_thread(two.stack.emulator.issue, B_DOMAIN, CLIENT_ID, OWNER)
            install = {
                "event": "ONAPPINSTALL",
                "auth[member_id]": two.a,
                "auth[domain]": two.stack.portal.domain,
                "auth[refresh_token]": grant["refresh_token"],
                "auth[access_token]": grant["access_token"],
                "auth[application_token]": "attacker-chosen-token",
            }
            answer = await http.post(f"{rest}/b24/install", content=urlencode(install), headers=FORM)
            assert answer.status_code == 403, answer.text
            tenant_a = store.get_tenant(two.stack.rt, two.a)
            assert store.verify_application_token(tenant_a, token_a)
            assert not store.verify_application_token(tenant_a, "attacker-chosen-token")

            # the settings API: A's admin token, aimed at B, is refused; aimed at A it works
            user_a = await asyncio.to_thread(two.stack.emulator.issue, two.stack.portal.domain, CLIENT_ID, OWNER)
            auth = {"Authorization": f"Bearer {user_a['access_token']}"}
            own = await http.get(f"{rest}/b24/api/status", headers=auth | {"X-B24-Member-Id": two.a})
            assert own.status_code == 200, own.text
            for method, path, payload in [
                ("GET", "/b24/api/status", None),
                ("GET", "/b24/api/settings", None),
                ("PATCH", "/b24/api/settings", {"register_internal": True}),
                ("POST", "/b24/api/tokens", {"name": "intruder"}),
                ("GET", "/b24/api/calls", None),
            ]:
                answer = await http.request(
                    method,
                    f"{rest}{path}",
                    headers=auth | {"X-B24-Member-Id": two.b, "Content-Type": "application/json"},
                    content=json.dumps(payload) if payload is not None else None,
                )
                assert answer.status_code == 401, (method, path, answer.text)


async def test_a_forged_or_tampered_lease_in_the_cloud_grants_nothing() -> None:
    async with two_portals() as two:
        rt = two.stack.rt
        genuine, other = load_lease(rt, two.a), load_lease(rt, two.b)
        assert genuine is not None and genuine.token and other is not None and other.token
        assert licensing.entitlements(rt, two.a, clock.now()).state == "trial"
        body, _, signature = genuine.token.partition(".")
        flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:] + "." + signature
        _, token = await issue_token(two.a, "A office")
        for forged, reason in [
            (other.token, "for portal"),  # B's genuine lease stored as A's
            (flipped, "cannot be trusted"),  # A's own lease, one character of its claims changed
            (other.token.partition(".")[0] + "." + signature, "cannot be trusted"),  # B's claims, A's signature
        ]:
            save_lease(rt, genuine.model_copy(update={"token": forged}))
            granted = licensing.entitlements(rt, two.a, clock.now())
            assert granted.state == "restricted" and reason in granted.reason, granted
            async with connect(two.stack.cloud.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                welcome = await hello(ws)
                assert welcome.plan is not None and welcome.plan.state == "restricted"  # what the agent is told
        save_lease(rt, genuine)
        assert licensing.entitlements(rt, two.a, clock.now()).state == "trial"
