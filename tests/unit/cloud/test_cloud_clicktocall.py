"""Click-to-call and callbacks against the Bitrix24 emulator over real HTTP (DynamoDB and the websocket
management API: moto in-process). A click in the emulator is delivered to a local receiver as Bitrix24 posts it,
and that post goes through the real events route logic; the agent is a connection id whose pushes moto records.

The emulator is the judge: every click ends either as one ``originate`` to the right agent, or as its CALL_ID
finished once with a status and a reason; never an open card, never a second finish, never a second call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from cloud_builders import API_ID, REGION, sent
from licensing_builders import PUBLIC_KEYS_ENV, LicenseServerDouble
from licensing_builders import Clock as LicenseClock
from moto import mock_aws

from cloud import clock, licensing
from cloud.agents import connections, tokens
from cloud.agents.commands import claim_crm_finish, get_command
from cloud.bitrix24.client import client_for
from cloud.bitrix24.events import B24Event, handle_event
from cloud.calls.store import record_event
from cloud.clicktocall import limits, push_settings, records, register_handlers, sweep
from cloud.clicktocall.context import ClickToCallServices
from cloud.clicktocall.failures import on_command_failed
from cloud.clicktocall.handlers import handle_click
from cloud.crm.directory import load_directory, save_directory
from cloud.crm.pipeline import process_call, request_crm
from cloud.crm.settings import ClickToCallSettings, CrmSettings, LineSettings, save_settings
from cloud.link.dispatch import handle_agent_message
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.storage.dynamo import from_item
from cloud.storage.tables import create_tables
from cloud.tenants import store
from cloud.tenants.store import Install, OAuthTokens
from sandbox.bitrix24 import App, Emulator, EmulatorServer, User
from sandbox.bitrix24.portal import Call, Portal
from sandbox.bitrix24.testing import EventReceiver, Received
from wire_protocol.call_events import CallEnded, CallStarted, CallSummary
from wire_protocol.channel_rules import ChannelRules
from wire_protocol.messages import (
    Ack,
    AgentSettings,
    Command,
    CommandResult,
    ErrorMessage,
    OriginateCommand,
    OriginateSettings,
    Welcome,
    encode,
)

DOMAIN = "acme.bitrix24.com"
CLIENT_ID = "local.pbxlink.c2c"
SECRET = "c2c-secret"
OWNER, ANNA, BORIS, CAROL = 1, 11, 12, 13
CID, CID2 = "CID1=", "CID2="
CLIENT = "+7 (926) 123-45-67"
LINE = "74951234567"


@dataclass
class World:
    emulator: Emulator
    portal: Portal
    receiver: EventReceiver
    rt: Runtime
    tenant: str
    agent_id: str

    def save(self, **changes: Any) -> CrmSettings:
        crm = CrmSettings.model_validate(changes)
        save_settings(self.rt, self.tenant, crm)
        return crm

    def post(self, index: int) -> Received:
        return self.receiver.wait(index + 1)[index]

    def deliver(self, post: Received) -> dict[str, Any]:
        """What our events route answers to one of Bitrix24's posts."""
        answer = handle_event(self.rt, post.raw, post.content_type)
        assert answer.status == 200, answer.body
        result: dict[str, Any] = json.loads(answer.body)
        return result

    def click(self, user: int = ANNA, phone: str = CLIENT) -> tuple[str, Received]:
        """A user clicks a number in the portal; Bitrix24's post is delivered to us once."""
        count = len(self.receiver.received)
        call_id = self.emulator.click_to_call(DOMAIN, user, phone)
        assert call_id is not None
        post = self.post(count)
        self.deliver(post)
        return call_id, post

    def call(self, call_id: str) -> Call:
        with self.portal.lock:
            return self.portal.calls[call_id]

    def commands(self, connection_id: str = CID) -> list[Command]:
        return [m for m in sent(connection_id) if isinstance(m, Command)]

    def originates(self, connection_id: str = CID) -> list[OriginateCommand]:
        """What each command asked the agent to do (``extension``, ``number``)."""
        bodies = [c.command for c in self.commands(connection_id)]
        assert all(isinstance(b, OriginateCommand) for b in bodies)
        return [b for b in bodies if isinstance(b, OriginateCommand)]

    def clean(self) -> None:
        audit = self.portal.audit()
        assert audit["unfinished"] == [] and audit["open_cards"] == {}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "WS_MGMT_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    emulator = Emulator(seed=5)
    with mock_aws(), EmulatorServer(emulator) as server, EventReceiver() as receiver:
        create_tables(boto3.client("dynamodb", region_name=REGION), "test-")
        emulator.add_app(App(CLIENT_ID, SECRET))
        portal = emulator.add_portal(DOMAIN, burst=10_000, rate=1_000)
        portal.add_user(User(OWNER, "Olga", "Owner", admin=True))
        portal.add_user(User(ANNA, "Anna", "Petrova", phone_inner="101"))
        portal.add_user(User(BORIS, "Boris", "Ivanov", phone_inner="102"))
        portal.add_user(User(CAROL, "Carol", "Noext"))
        installation, granted = emulator.install(DOMAIN, CLIENT_ID)
        settings = Settings(
            table_prefix="test-",
            region=REGION,
            ws_api_id=API_ID,
            b24_client_id=CLIENT_ID,
            b24_client_secret=SECRET,
            b24_oauth_url=f"{server.url}/oauth/token/",
            license_public_keys=PUBLIC_KEYS_ENV,
        )
        rt = Runtime(settings)
        tenant = str(granted["member_id"])
        store.save_install(
            rt,
            Install(
                tenant=tenant,
                domain=DOMAIN,
                client_endpoint=granted["client_endpoint"],
                application_token=installation.application_token,
                language="en",
                tokens=OAuthTokens(
                    access_token=granted["access_token"],
                    refresh_token=granted["refresh_token"],
                    access_expires_at=granted["expires"],
                ),
            ),
        )
        client = client_for(rt, tenant)
        client.call("telephony.externalLine.add", {"NUMBER": LINE, "NAME": "Head office"})
        for event in ("ONEXTERNALCALLSTART", "ONEXTERNALCALLBACKSTART"):
            client.call("event.bind", {"event": event, "handler": f"{receiver.url}/b24/events"})
        license_server = LicenseServerDouble(LicenseClock(clock.now()))
        licensing.check_license(rt, tenant, clock.now(), client=license_server.client)  # the portal's trial
        license_server.close()
        register_handlers()  # another test may have replaced them
        agent_id, _ = tokens.issue_token(rt, tenant, "Head office")
        connections.record(rt, tenant, agent_id, CID)
        try:
            yield World(emulator, portal, receiver, rt, tenant, agent_id)
        finally:
            rt.close()


# -- the call is placed -----------------------------------------------------------------------------------------


def test_a_click_becomes_one_originate_from_the_users_extension(world: World) -> None:
    call_id, post = world.click()
    (command,) = world.commands()
    assert command.command_id == f"c2c:{call_id}"
    (body,) = world.originates()
    assert (body.extension, body.number, body.caller_id) == ("101", "79261234567", None)
    stored = get_command(world.rt, world.tenant, command.command_id)
    assert stored is not None and stored["crm_call_id"] == call_id and stored["agent_id"] == world.agent_id
    assert not world.call(call_id).finished  # the CRM pipeline finishes it when the PBX call ends

    assert world.deliver(post) == {"result": "handled"}  # Bitrix24 delivered the click again
    assert len(world.commands()) == 1  # still one call
    record = records.get(world.rt, world.tenant, command.command_id)
    assert record is not None and record["state"] == "sent"


def test_an_unknown_user_refreshes_the_user_map_before_giving_up(world: World) -> None:
    world.click()  # caches the user map
    directory = load_directory(world.rt, world.tenant)
    assert directory.fetched_at is not None
    save_directory(
        world.rt, world.tenant, directory.model_copy(update={"fetched_at": directory.fetched_at - timedelta(minutes=2)})
    )
    world.portal.add_user(User(14, "Dan", "New", phone_inner="104"))
    world.click(user=14)
    assert [c.extension for c in world.originates()] == ["101", "104"]


def test_the_admins_override_and_the_lines_agent_decide(world: World) -> None:
    second, _ = tokens.issue_token(world.rt, world.tenant, "Branch")
    connections.record(world.rt, world.tenant, second, CID2)
    world.save(extension_overrides={"201": ANNA}, lines={LINE: LineSettings(agent_id=second)})
    world.click()
    assert world.commands(CID) == []
    (body,) = world.originates(CID2)
    assert body.extension == "201"


def test_the_pipeline_finishes_a_placed_click_once_and_registers_nothing(world: World) -> None:
    call_id, _ = world.click()
    (command,) = world.commands()
    answered_call(world, command.command_id)
    assert process_call(world.rt, world.tenant, world.agent_id, "pbx-77.1").status == "done"
    call = world.call(call_id)
    assert (call.finished, call.status_code, call.duration, call.finish_user_id) == (True, "200", 42, ANNA)
    assert len(world.portal.calls) == 1  # the click's CALL_ID, never a second registration
    world.clean()
    # a late failed result (the agent's resend) cannot finish it again
    result = CommandResult(command_id=command.command_id, ok=False, code="hung_up")
    assert on_command_failed(world.rt, world.tenant, world.agent_id, result)
    assert world.call(call_id).status_code == "200"


def answered_call(world: World, command_id: str, answered: bool = True) -> None:
    at = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    started = CallStarted(
        call_id="pbx-77.1",
        seq=1,
        at=at,
        direction="outbound",
        external_number="79261234567",
        line=None,
        caller_extension="101",
        command_id=command_id,
    )
    summary = CallSummary(
        call_id="pbx-77.1",
        direction="outbound",
        external_number="79261234567",
        line=None,
        caller_extension="101",
        rang=[],
        answered_by=None,
        transfers=[],
        final_extension="101",
        result="answered" if answered else "no_answer",
        started_at=at,
        answered_at=at + timedelta(seconds=5) if answered else None,
        ended_at=at + timedelta(seconds=47),
        talk_seconds=42 if answered else 0,
        recording=None,
        command_id=command_id,
    )
    ended = CallEnded(call_id="pbx-77.1", seq=2, at=at + timedelta(seconds=47), summary=summary)
    record_event(world.rt, world.tenant, world.agent_id, 1, started)
    record_event(world.rt, world.tenant, world.agent_id, 2, ended)
    request_crm(world.rt, world.tenant, world.agent_id, "pbx-77.1", at)  # what dispatch does after storing


# -- refused before the PBX ---------------------------------------------------------------------------------------


def assert_finished(world: World, call_id: str, status: str, reason: str) -> None:
    call = world.call(call_id)
    assert (call.finished, call.status_code, call.duration, call.finish_user_id) == (True, status, 0, call.user_id)
    assert reason in call.failed_reason
    world.clean()


@pytest.mark.parametrize(
    ("settings", "user", "phone", "status", "reason"),
    [
        ({}, CAROL, CLIENT, "480", "no internal phone number"),
        ({"click_to_call": {"allowed_patterns": ["+7495XXXXXXX"]}}, ANNA, CLIENT, "403", "not allowed"),
        ({}, ANNA, "+49 30 1234567", "403", "not allowed"),  # abroad, and no pattern allows it
        ({}, ANNA, "112", "404", "not a complete phone number"),
        ({"click_to_call": {"enabled": False}}, ANNA, CLIENT, "403", "turned off"),
        ({"click_to_call": {"default_agent_id": "ag_0000000000000000"}}, ANNA, CLIENT, "503", "No phone system"),
    ],
)
def test_a_click_that_cannot_be_placed_is_finished_with_the_reason(
    world: World, settings: dict[str, Any], user: int, phone: str, status: str, reason: str
) -> None:
    world.save(**settings)
    call_id, _ = world.click(user, phone)
    assert world.commands() == []
    assert_finished(world, call_id, status, reason)


def test_an_offline_agent_finishes_the_click_at_once(world: World) -> None:
    connections.drop(world.rt, world.tenant, world.agent_id, CID)
    call_id, post = world.click()
    assert_finished(world, call_id, "503", "not connected")
    world.deliver(post)  # a repeated delivery does not finish it twice
    assert not world.call(call_id).finish_errors and world.call(call_id).status_code == "503"


def test_the_reason_is_in_the_portals_language(world: World) -> None:
    world.rt.dynamodb.update_item(
        TableName=world.rt.tables.tenants,
        Key={"tenant": {"S": world.tenant}},
        UpdateExpression="SET #l = :ru",
        ExpressionAttributeNames={"#l": "language"},
        ExpressionAttributeValues={":ru": {"S": "ru"}},
    )
    call_id, _ = world.click(CAROL)
    assert world.call(call_id).failed_reason.startswith("В вашем профиле")  # noqa: RUF001


def test_rate_limits_per_user_and_per_tenant(world: World) -> None:
    world.save(click_to_call={"per_user_per_minute": 2, "per_tenant_per_minute": 3})
    # different numbers: Bitrix24 hands a second click on a number still in progress the same CALL_ID
    anna = [world.click(ANNA, f"+7926123456{i}")[0] for i in range(3)]
    assert len(world.commands()) == 2
    third = world.call(anna[2])
    assert (third.finished, third.status_code) == (True, "480") and "Too many calls" in third.failed_reason
    boris = [world.click(BORIS, f"+7926765432{i}")[0] for i in range(2)]
    assert len(world.commands()) == 3  # the tenant's third call, then its limit
    last = world.call(boris[1])
    assert (last.finished, last.status_code) == (True, "480") and "Your company" in last.failed_reason


def test_counters_refuse_exactly_over_the_limit_and_reset_each_minute(world: World) -> None:
    now = [1_000_000.0]

    def take(user: str) -> str | None:
        return limits.take(world.rt, world.tenant, user, per_user=2, per_tenant=3, clock=lambda: now[0])

    assert [take("11"), take("11"), take("11")] == [None, None, "user"]
    assert [take("12"), take("12")] == [None, "tenant"]  # the refused user call did not use up the tenant's
    now[0] += 60
    assert take("11") is None
    assert take("other-tenant-user") is None


# -- refused by the PBX ---------------------------------------------------------------------------------------------


def test_the_pbx_refusing_finishes_the_click_once(world: World) -> None:
    call_id, _ = world.click()
    (command,) = world.commands()
    result = CommandResult(command_id=command.command_id, ok=False, code="rejected", message="Permission denied")
    outcome = handle_agent_message(world.rt, CID, encode(result))
    assert [type(m) for m in outcome.replies] == [Ack]  # stored, finished, confirmed
    assert_finished(world, call_id, "503", "refused to place the call. (Permission denied)")
    again = handle_agent_message(world.rt, CID, encode(result))  # the agent resends it
    assert [type(m) for m in again.replies] == [Ack] and world.call(call_id).status_code == "503"
    record = records.get(world.rt, world.tenant, command.command_id)
    assert record is not None and record["state"] == "finished"


def test_a_failed_result_leaves_a_call_the_pipeline_owns_alone(world: World) -> None:
    call_id, _ = world.click()
    (command,) = world.commands()
    answered_call(world, command.command_id, answered=False)  # the user's phone rang: the PBX placed the call
    assert process_call(world.rt, world.tenant, world.agent_id, "pbx-77.1").status == "done"
    assert world.call(call_id).status_code == "603-S"
    result = CommandResult(command_id=command.command_id, ok=False, code="no_answer")
    assert on_command_failed(world.rt, world.tenant, world.agent_id, result)
    assert world.call(call_id).status_code == "603-S" and not world.call(call_id).finish_errors
    world.clean()


def test_when_the_failure_finishes_first_the_pipeline_skips_the_call(world: World) -> None:
    call_id, _ = world.click()
    (command,) = world.commands()
    result = CommandResult(command_id=command.command_id, ok=False, code="no_answer")
    assert on_command_failed(world.rt, world.tenant, world.agent_id, result)
    assert_finished(world, call_id, "480", "did not answer")
    answered_call(world, command.command_id, answered=False)  # its events arrive after the result
    assert process_call(world.rt, world.tenant, world.agent_id, "pbx-77.1").status == "skipped"
    assert len(world.portal.calls) == 1 and world.call(call_id).status_code == "480"
    assert claim_crm_finish(world.rt, world.tenant, command.command_id, "pipeline") == "failure"


def test_a_finish_bitrix24_cannot_take_now_leaves_the_result_unconfirmed(world: World) -> None:
    call_id, _ = world.click()
    (command,) = world.commands()
    world.emulator.faults.outage_until = time.time() + 3600
    try:
        result = CommandResult(command_id=command.command_id, ok=False, code="busy")
        outcome = handle_agent_message(world.rt, CID, encode(result))
    finally:
        world.emulator.faults.outage_until = 0.0
    assert [(type(m), getattr(m, "about", None)) for m in outcome.replies] == [(ErrorMessage, "command_result")]
    assert not world.call(call_id).finished
    outcome = handle_agent_message(world.rt, CID, encode(result))  # resent later: now it goes through
    assert [type(m) for m in outcome.replies] == [Ack]
    assert_finished(world, call_id, "486", "busy")


def test_a_finish_sent_before_an_interruption_is_not_sent_twice(world: World) -> None:
    call_id, _ = world.click()
    (command,) = world.commands()
    finishes: list[str] = []

    class Counting:
        def __init__(self) -> None:
            self.inner = client_for(world.rt, world.tenant)

        def call(self, method: str, params: Any = None) -> Any:
            if method.endswith("finish"):
                finishes.append(method)
            return self.inner.call(method, params)

    services = ClickToCallServices(client_for=lambda rt, tenant: Counting())
    result = CommandResult(command_id=command.command_id, ok=False, code="failed", message="no such endpoint")
    # an earlier attempt was marked as sent, and Bitrix24 finished the call before the Lambda died
    records.update(world.rt, world.tenant, command.command_id, finish_attempted=True, state="finishing")
    client_for(world.rt, world.tenant).call("telephony.externalCall.finish", {"CALL_ID": call_id, "USER_ID": ANNA})
    assert on_command_failed(world.rt, world.tenant, world.agent_id, result, services)
    assert on_command_failed(world.rt, world.tenant, world.agent_id, result, services)
    assert finishes == ["telephony.externalCall.finish"]  # "not found" after our own attempt: it was finished
    record = records.get(world.rt, world.tenant, command.command_id)
    assert record is not None and record["state"] == "finished"


# -- callbacks ----------------------------------------------------------------------------------------------------


def callback(world: World, phone: str = CLIENT) -> Received:
    count = len(world.receiver.received)
    assert world.emulator.order_callback(DOMAIN, phone, text="Call me back")
    post = world.post(count)
    world.deliver(post)
    return post


def test_a_callback_is_registered_and_rings_the_callback_extension_first(world: World) -> None:
    world.save(click_to_call={"callback_from": "500"}, lines={LINE: LineSettings(default_owner=BORIS)})
    post = callback(world)
    (command,) = world.commands()
    (call,) = world.portal.calls.values()
    assert (call.type, call.user_id, call.phone_number, call.line_number) == (4, BORIS, "+79261234567", LINE)
    assert call.external_call_id == command.command_id and command.command_id.startswith("cb:")
    assert [(b.extension, b.number) for b in world.originates()] == [("500", "79261234567")]
    stored = get_command(world.rt, world.tenant, command.command_id)
    assert stored is not None and stored["crm_call_id"] == call.call_id
    world.deliver(post)  # delivered twice: still one call, one command
    assert len(world.commands()) == 1 and len(world.portal.calls) == 1 and call.registrations == 1


def test_a_callback_without_a_callback_extension_is_registered_and_finished_with_the_reason(world: World) -> None:
    callback(world)
    (call,) = world.portal.calls.values()
    assert world.commands() == []
    assert (call.type, call.user_id) == (4, OWNER)  # the portal's first user: no default set
    assert_finished(world, call.call_id, "503", "No extension or queue is set for callbacks")


def test_a_callback_to_a_forbidden_number_is_not_dialed(world: World) -> None:
    world.save(click_to_call={"callback_from": "500"})
    callback(world, "+44 20 7946 0958")
    (call,) = world.portal.calls.values()
    assert world.commands() == []
    assert_finished(world, call.call_id, "403", "not allowed")


# -- settings for agents --------------------------------------------------------------------------------------------


def test_agents_get_the_tenants_settings_after_hello_and_when_they_change(world: World) -> None:
    rules = ChannelRules(trunks=frozenset({"carrier"}))
    world.save(
        click_to_call=ClickToCallSettings(originate=OriginateSettings(context="pbx-out", ring_seconds=20)),
        channel_rules=rules,
    )
    hello = handle_agent_message(world.rt, CID, json.dumps({"type": "hello", "agent_version": "0.1.0"}))
    welcome, settings = hello.replies
    assert isinstance(welcome, Welcome) and isinstance(settings, AgentSettings)
    assert (settings.originate.context, settings.originate.ring_seconds, settings.calls) == ("pbx-out", 20, rules)

    offline, _ = tokens.issue_token(world.rt, world.tenant, "Offline branch")
    world.save(click_to_call=ClickToCallSettings(originate=OriginateSettings(prefix="9")))
    assert push_settings(world.rt, world.tenant) == [world.agent_id]
    pushed = [m for m in sent(CID) if isinstance(m, AgentSettings)]
    assert pushed[-1].originate.prefix == "9" and pushed[-1].calls is None
    assert offline not in push_settings(world.rt, world.tenant)


def test_events_of_a_tenant_reach_only_its_own_agents(world: World) -> None:
    other, _ = tokens.issue_token(world.rt, "other-portal", "Theirs")
    connections.record(world.rt, "other-portal", other, CID2)
    world.save(click_to_call={"default_agent_id": other})  # another tenant's agent id is simply unknown here
    call_id, _ = world.click()
    assert world.commands(CID2) == [] and world.commands(CID) == []
    assert_finished(world, call_id, "503", "No phone system")


def test_a_click_handled_directly_reports_its_outcome(world: World) -> None:
    tenant = store.get_tenant(world.rt, world.tenant)
    event = B24Event(event="ONEXTERNALCALLSTART", tenant=world.tenant, data={"CALL_ID": "x", "USER_ID": "0"})
    assert handle_click(world.rt, tenant, event).status == "ignored"


# -- the sweeper ----------------------------------------------------------------------------------------------------


def later(minutes: float) -> ClickToCallServices:
    """The sweeper as it runs ``minutes`` from now."""
    return ClickToCallServices(now=lambda: datetime.now(UTC) + timedelta(minutes=minutes))


def test_a_refusal_bitrix24_cannot_take_is_finished_by_the_sweeper(world: World) -> None:
    world.save(click_to_call={"enabled": False})
    world.emulator.faults.outage_until = time.time() + 3600
    try:
        call_id, _ = world.click()  # the click reaches us while the portal's REST is down
    finally:
        world.emulator.faults.outage_until = 0.0
    assert not world.call(call_id).finished
    assert sweep(world.rt) == 0  # not due yet
    assert sweep(world.rt, later(60)) == 1
    assert_finished(world, call_id, "403", "turned off")
    assert sweep(world.rt, later(600)) == 0  # settled: nothing left to do


def test_a_click_bitrix24_could_not_be_asked_about_is_finished_as_interrupted(world: World) -> None:
    world.emulator.faults.outage_until = time.time() + 3600
    try:
        call_id, _ = world.click()  # no user map yet, and Bitrix24 cannot give one: not "you have no extension"
    finally:
        world.emulator.faults.outage_until = 0.0
    assert world.commands() == [] and not world.call(call_id).finished
    assert sweep(world.rt, later(60)) == 1
    assert_finished(world, call_id, "503", "pbxlink could not place the call")


def test_a_callback_bitrix24_could_not_register_is_placed_by_the_sweeper(world: World) -> None:
    world.save(click_to_call={"callback_from": "500"}, lines={LINE: LineSettings(default_owner=BORIS)})
    world.emulator.faults.outage_until = time.time() + 3600
    try:
        post = callback(world)  # the web form's request arrives while the portal's REST is down
    finally:
        world.emulator.faults.outage_until = 0.0
    assert world.portal.calls == {} and world.commands() == []
    assert sweep(world.rt) == 0  # not due yet
    assert sweep(world.rt, later(60)) == 1  # Bitrix24 is back: registered and placed from the stored event
    (call,) = world.portal.calls.values()
    (command,) = world.commands()
    assert (call.type, call.user_id, call.phone_number, call.line_number) == (4, BORIS, "+79261234567", LINE)
    assert call.external_call_id == command.command_id
    assert [(b.extension, b.number) for b in world.originates()] == [("500", "79261234567")]
    world.deliver(post)  # Bitrix24 delivered the event twice after all: still one call, one command
    assert len(world.commands()) == 1 and len(world.portal.calls) == 1 and call.registrations == 1


def test_a_callback_is_retried_while_bitrix24_stays_down(world: World) -> None:
    world.save(click_to_call={"callback_from": "500"})
    world.emulator.faults.outage_until = time.time() + 3600
    try:
        callback(world)
        assert sweep(world.rt, later(60)) == 1  # still down: tried, postponed again
        items = world.rt.dynamodb.scan(TableName=world.rt.tables.click_to_call)["Items"]
        (key,) = [str(from_item(item)["key"]) for item in items if str(from_item(item)["key"]).startswith("cb:")]
        record = records.get(world.rt, world.tenant, key)
        assert record is not None and record["state"] == "received" and record["attempts"] == 2
    finally:
        world.emulator.faults.outage_until = 0.0
    assert world.portal.calls == {}
    assert sweep(world.rt, later(120)) == 1
    assert len(world.portal.calls) == 1 and len(world.commands()) == 1


def test_a_handler_that_died_half_way_is_taken_over_by_the_sweeper(world: World) -> None:
    call_id = world.emulator.click_to_call(DOMAIN, ANNA, CLIENT)
    assert call_id is not None
    key = f"c2c:{call_id}"
    # what the handler wrote before it died; its post is never delivered to us
    assert records.claim(
        world.rt, world.tenant, key, due_at=datetime.now(UTC), kind="click", crm_call_id=call_id, user_id=ANNA
    )
    assert sweep(world.rt, later(1)) == 1
    assert_finished(world, call_id, "503", "pbxlink could not place the call")
    record = records.get(world.rt, world.tenant, key)
    assert record is not None and record["state"] == "finished" and "due_at" not in record


def test_the_sweeper_leaves_a_call_the_pipeline_owns_alone(world: World) -> None:
    call_id, _ = world.click()
    (command,) = world.commands()
    records.update(world.rt, world.tenant, command.command_id, state="received", due_at=datetime.now(UTC))
    assert claim_crm_finish(world.rt, world.tenant, command.command_id, "pipeline") == "pipeline"
    assert sweep(world.rt, later(1)) == 1
    assert not world.call(call_id).finished  # the CRM pipeline finishes it when the PBX call ends
    record = records.get(world.rt, world.tenant, command.command_id)
    assert record is not None and record["state"] == "pipeline" and "due_at" not in record


def test_stored_settings_that_no_longer_validate_give_agents_the_defaults(world: World) -> None:
    world.rt.dynamodb.put_item(
        TableName=world.rt.tables.settings,
        Item={"tenant": {"S": world.tenant}, "crm": {"S": json.dumps({"no_such_setting": 1})}},
    )
    hello = handle_agent_message(world.rt, CID, json.dumps({"type": "hello", "agent_version": "0.1.0"}))
    assert [type(m) for m in hello.replies] == [Welcome, AgentSettings]
    assert hello.replies[1] == AgentSettings()


def test_a_command_the_agent_never_answers_is_finished_by_the_sweeper(world: World) -> None:
    call_id, _ = world.click()  # sent; then the agent crashed before storing it: no result will ever come
    assert sweep(world.rt, later(5)) == 0  # an answer may still come (the user's phone may still ring)
    assert sweep(world.rt, later(11)) == 1
    assert_finished(world, call_id, "503", "pbxlink could not place the call")


def test_a_command_the_agent_answered_is_left_to_the_pipeline_by_the_sweeper(world: World) -> None:
    call_id, _ = world.click()
    (command,) = world.commands()
    result = CommandResult(command_id=command.command_id, ok=True, code="answered", call_id="pbx-77.1")
    assert [type(m) for m in handle_agent_message(world.rt, CID, encode(result)).replies] == [Ack]
    assert sweep(world.rt, later(11)) == 1
    assert not world.call(call_id).finished  # the call is on: the pipeline finishes it when it ends
    record = records.get(world.rt, world.tenant, command.command_id)
    assert record is not None and record["state"] == "sent" and "due_at" not in record


def test_a_plan_without_click_to_call_refuses_the_click_and_says_why(world: World) -> None:
    licensing.store.save_lease(world.rt, licensing.LeaseRecord(tenant=world.tenant))  # no lease: the free tier
    call_id, _ = world.click(ANNA)
    assert world.originates() == []
    call = world.call(call_id)
    assert call.finished and call.status_code == "403" and "plan" in call.failed_reason
    world.clean()
