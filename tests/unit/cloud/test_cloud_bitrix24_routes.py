"""``/b24/install`` and ``/b24/events`` through Chalice's test client; Bitrix24 (OAuth and REST) as an
``httpx.MockTransport`` script. The same flow against the emulator over HTTP is in tests/integration."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from chalice.test import Client
from cloud_builders import PROJECT_DIR, REGION

import cloud.app
from cloud.bitrix24 import events, install
from cloud.bitrix24.events import B24Event
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.storage.dynamo import from_item, to_item
from cloud.tenants import store
from cloud.tenants.store import Tenant

pytest_plugins = ["cloud_testkit"]

MEMBER = "a223c6b3710f85df22e9377d6c4f7553"
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"
BASE = "https://pbx.example/api"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Bitrix:
    """OAuth + REST: the refresh answers for ``member_id``; event.get answers ``bound``."""

    def __init__(self) -> None:
        self.member_id = MEMBER
        self.oauth_error: str | None = None
        self.bound: list[dict[str, Any]] = []
        self.bind_error: dict[str, Any] | None = None
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/oauth/token/":
            if self.oauth_error:
                return httpx.Response(400, json={"error": self.oauth_error})
            return httpx.Response(
                200,
                json={
                    "access_token": "acc-new",
                    "refresh_token": "ref-new",
                    "expires_in": 3600,
                    "member_id": self.member_id,
                    "client_endpoint": "https://acme.bitrix24.com/rest/",
                    "server_endpoint": "https://oauth.bitrix.info/rest/",
                    "scope": "crm,telephony,user",
                    "domain": "oauth.bitrix.info",
                },
            )
        if path == "/rest/event.get":
            return httpx.Response(200, json={"result": self.bound})
        if path == "/rest/batch":
            cmd = json.loads(request.content)["cmd"]
            if self.bind_error:
                return httpx.Response(200, json={"result": {"result": [], "result_error": self.bind_error}})
            return httpx.Response(200, json={"result": {"result": dict.fromkeys(cmd, True), "result_error": []}})
        return httpx.Response(404, json={"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"})

    def batches(self) -> list[dict[str, str]]:
        return [json.loads(r.content)["cmd"] for r in self.requests if r.url.path == "/rest/batch"]


@pytest.fixture
def bitrix() -> Bitrix:
    return Bitrix()


@pytest.fixture
def b24rt(rt: Runtime, bitrix: Bitrix) -> Iterator[Runtime]:
    settings = Settings(
        table_prefix="test-",
        region=REGION,
        b24_client_id="app.1",
        b24_client_secret="s3cret",
        b24_oauth_url="https://oauth.bitrix.info/oauth/token/",
        public_base_url=BASE,
    )
    runtime = Runtime(settings, http_client_factory=lambda: httpx.Client(transport=httpx.MockTransport(bitrix)))
    cloud.app.use_runtime(runtime)
    try:
        yield runtime
    finally:
        cloud.app.use_runtime(rt)
        runtime.close()


@pytest.fixture
def http(b24rt: Runtime) -> Client:
    return Client(cloud.app.app, stage_name="dev", project_dir=PROJECT_DIR)


def onappinstall(**auth: str) -> str:
    fields = {
        "event": "ONAPPINSTALL",
        "data[VERSION]": "1",
        "data[LANGUAGE_ID]": "de",
        "ts": "1696527000",
        "auth[access_token]": "acc-install",
        "auth[refresh_token]": "ref-install",
        "auth[expires_in]": "3600",
        "auth[scope]": "crm telephony user",
        "auth[domain]": "acme.bitrix24.com",
        "auth[client_endpoint]": "https://attacker.example/rest/",
        "auth[member_id]": MEMBER,
        "auth[application_token]": APP_TOKEN,
    } | {f"auth[{k}]": v for k, v in auth.items()}
    return urlencode(fields)


def event_body(event: str = "ONEXTERNALCALLSTART", token: str = APP_TOKEN, member: str = MEMBER) -> str:
    return urlencode(
        {
            "event": event,
            "event_handler_id": "1055",
            "data[CALL_ID]": "externalCall.89350264e026dace3f2b14d1f438257c.1773236989",
            "data[USER_ID]": "2",
            "data[PHONE_NUMBER]": "+494951234567",
            "ts": "1773236988",
            "auth[access_token]": "user-token",
            "auth[domain]": "acme.bitrix24.com",
            "auth[member_id]": member,
            "auth[application_token]": token,
        }
    )


def installed(http: Client) -> None:
    answer = http.http.post("/b24/install", headers=FORM, body=onappinstall())
    assert answer.status_code == 200, answer.body


def test_onappinstall_stores_the_tenant_verified_and_binds_events(http: Client, b24rt: Runtime, bitrix: Bitrix) -> None:
    seen: list[Tenant] = []

    def hook(rt: Runtime, tenant: Tenant) -> None:
        seen.append(tenant)

    install.on_installed(hook)
    try:
        answer = http.http.post("/b24/install", headers=FORM, body=onappinstall())
    finally:
        install.remove_install_hook(hook)
    assert answer.status_code == 200 and json.loads(answer.body) == {"result": "installed", "tenant": MEMBER}
    tenant = store.get_tenant(b24rt, MEMBER)
    # the endpoint comes from the OAuth server, not from the post
    assert (tenant.domain, tenant.client_endpoint, tenant.language) == (
        "acme.bitrix24.com",
        "https://acme.bitrix24.com/rest/",
        "de",
    )
    assert tenant.scope == ["crm", "telephony", "user"]
    assert store.verify_application_token(tenant, APP_TOKEN)
    assert store.load_tokens(b24rt, MEMBER).access_token == "acc-new"
    [oauth] = [r for r in bitrix.requests if r.url.path == "/oauth/token/"]
    assert b"refresh_token=ref-install" in oauth.content
    assert bitrix.batches() == [
        {
            event: f"event.bind?event={event}&handler={BASE.replace(':', '%3A').replace('/', '%2F')}%2Fb24%2Fevents"
            for event in ("ONEXTERNALCALLSTART", "ONEXTERNALCALLBACKSTART", "ONAPPUNINSTALL")
        }
    ]
    assert [t.tenant for t in seen] == [MEMBER]


def test_the_ui_install_answers_a_page_that_finishes_the_install(http: Client, b24rt: Runtime) -> None:
    form = {
        "AUTH_ID": "acc-install",
        "AUTH_EXPIRES": "3600",
        "REFRESH_ID": "ref-install",
        "SERVER_ENDPOINT": "https://oauth.bitrix.info/rest/",
        "APPLICATION_TOKEN": APP_TOKEN,
        "APPLICATION_SCOPE": "crm,telephony",
        "member_id": MEMBER,
        "status": "L",
        "PLACEMENT": "DEFAULT",
    }
    answer = http.http.post(
        "/b24/install?DOMAIN=acme.bitrix24.com&PROTOCOL=1&LANG=en&APP_SID=dd8cec11", headers=FORM, body=urlencode(form)
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert b"BX24.installFinish()" in answer.body
    tenant = store.get_tenant(b24rt, MEMBER)
    assert tenant.scope == ["crm", "telephony"] and store.verify_application_token(tenant, APP_TOKEN)
    assert not store.verify_application_token(tenant, "dd8cec11")  # APP_SID is not the application token


@pytest.mark.parametrize("oauth_error", ["invalid_grant", "other_member"])
def test_an_install_the_oauth_server_does_not_confirm_is_refused(
    http: Client, b24rt: Runtime, bitrix: Bitrix, oauth_error: str
) -> None:
    if oauth_error == "other_member":
        bitrix.member_id = "f" * 32
    else:
        bitrix.oauth_error = oauth_error
    answer = http.http.post("/b24/install", headers=FORM, body=onappinstall())
    assert answer.status_code == 403
    assert b24rt.dynamodb.scan(TableName=b24rt.tables.tenants)["Items"] == []


def test_reinstall_keeps_settings_and_does_not_rebind_bound_events(
    http: Client, b24rt: Runtime, bitrix: Bitrix
) -> None:
    installed(http)
    b24rt.dynamodb.update_item(
        TableName=b24rt.tables.tenants,
        Key=to_item({"tenant": MEMBER}),
        UpdateExpression="SET settings = :s",
        ExpressionAttributeValues=to_item({":s": {"line": "7"}}),
    )
    bitrix.bound = [
        {"event": "onexternalcallstart", "handler": BASE + "/b24/events", "auth_type": "0", "offline": 0},
        {"event": "ONAPPUNINSTALL", "handler": BASE + "/b24/events", "auth_type": "0", "offline": 0},
        {"event": "ONEXTERNALCALLBACKSTART", "handler": "https://old.example/b24/events", "auth_type": "0"},
    ]
    installed(http)
    assert list(bitrix.batches()[-1]) == ["ONEXTERNALCALLBACKSTART"]
    item = from_item(b24rt.dynamodb.get_item(TableName=b24rt.tables.tenants, Key=to_item({"tenant": MEMBER}))["Item"])
    assert item["settings"] == {"line": "7"} and item["token_version"] == 2


def test_an_already_bound_handler_is_tolerated_other_bind_errors_are_not(
    http: Client, b24rt: Runtime, bitrix: Bitrix
) -> None:
    bitrix.bind_error = {"ONAPPUNINSTALL": {"error": "ERROR_HANDLER_ALREADY_EXIST", "error_description": "exists"}}
    installed(http)
    bitrix.bind_error = {"ONAPPUNINSTALL": {"error": "ACCESS_DENIED", "error_description": "Access denied!"}}
    answer = http.http.post("/b24/install", headers=FORM, body=onappinstall())
    assert answer.status_code == 502 and b"ACCESS_DENIED" in answer.body
    assert store.get_tenant(b24rt, MEMBER).active  # stored; binding can be redone


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", b"member_id"),
        ("%%%", b"not a form"),
        ("event=ONAPPINSTALL", b"auth"),
        (onappinstall(member_id="bad#id"), b"member_id"),
    ],
)
def test_malformed_installs_are_400(http: Client, body: str, message: bytes) -> None:
    answer = http.http.post("/b24/install", headers=FORM, body=body)
    assert answer.status_code == 400 and message in answer.body


def test_a_verified_event_reaches_its_handler(http: Client, b24rt: Runtime) -> None:
    installed(http)
    received: list[B24Event] = []
    with events.event_handler("ONEXTERNALCALLSTART", lambda rt, tenant, event: received.append(event)):
        answer = http.http.post("/b24/events", headers=FORM, body=event_body())
    assert answer.status_code == 200
    [event] = received
    assert (event.event, event.tenant, event.event_handler_id, event.data["USER_ID"]) == (
        "ONEXTERNALCALLSTART",
        MEMBER,
        "1055",
        "2",
    )
    assert "user-token" not in repr(event)


def test_forged_and_foreign_events_are_403_and_change_nothing(http: Client, b24rt: Runtime) -> None:
    installed(http)
    received: list[B24Event] = []
    with events.event_handler("ONEXTERNALCALLSTART", lambda rt, tenant, event: received.append(event)):
        forged = http.http.post("/b24/events", headers=FORM, body=event_body(token="0" * 32))
        foreign = http.http.post("/b24/events", headers=FORM, body=event_body(member="f" * 32))
        bad_key = http.http.post("/b24/events", headers=FORM, body=event_body(member="x#y"))
        uninstall = http.http.post("/b24/events", headers=FORM, body=event_body("ONAPPUNINSTALL", token="0" * 32))
    assert [a.status_code for a in (forged, foreign, bad_key, uninstall)] == [403, 403, 403, 403]
    assert received == []
    assert store.get_tenant(b24rt, MEMBER).active


def test_uninstall_disables_the_tenant_and_later_events_are_refused(http: Client, b24rt: Runtime) -> None:
    installed(http)
    answer = http.http.post("/b24/events", headers=FORM, body=event_body("ONAPPUNINSTALL"))
    assert answer.status_code == 200
    assert not store.get_tenant(b24rt, MEMBER).active
    again = http.http.post("/b24/events", headers=FORM, body=event_body("ONAPPUNINSTALL"))
    assert again.status_code == 200  # a duplicate delivery is harmless
    assert http.http.post("/b24/events", headers=FORM, body=event_body()).status_code == 403


def test_unhandled_events_are_acknowledged_and_failing_handlers_are_500(http: Client) -> None:
    installed(http)
    answer = http.http.post("/b24/events", headers=FORM, body=event_body("ONCRMLEADADD"))
    assert answer.status_code == 200 and json.loads(answer.body) == {"result": "ignored"}

    def broken(rt: Runtime, tenant: Tenant, event: B24Event) -> None:
        raise RuntimeError("boom")

    with events.event_handler("ONCRMLEADADD", broken):
        failed = http.http.post("/b24/events", headers=FORM, body=event_body("ONCRMLEADADD"))
    assert failed.status_code == 500 and b"boom" not in failed.body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", b"event"),
        ("a=1&a[b]=2", b"both a value and an array"),
        ("event=lower case!", b"event"),
        ("event=ONEXTERNALCALLSTART", b"auth"),
        ("event=ONEXTERNALCALLSTART&auth=x", b"auth"),
        ("event=ONEXTERNALCALLSTART&auth[member_id]=m", b"application_token"),
    ],
)
def test_malformed_events_are_400(http: Client, body: str, message: bytes) -> None:
    answer = http.http.post("/b24/events", headers=FORM, body=body)
    assert answer.status_code == 400 and message in answer.body


def test_json_events_are_accepted_and_bad_json_is_400(http: Client) -> None:
    installed(http)
    headers = {"Content-Type": "application/json"}
    body = {"event": "ONEXTERNALCALLBACKSTART", "auth": {"member_id": MEMBER, "application_token": APP_TOKEN}}
    assert http.http.post("/b24/events", headers=headers, body=json.dumps(body)).status_code == 200
    assert http.http.post("/b24/events", headers=headers, body="[1]").status_code == 400
    assert http.http.post("/b24/events", headers=headers, body="{").status_code == 400


def test_handlers_cannot_take_over_install_events() -> None:
    with pytest.raises(ValueError):
        events.register_event_handler("ONAPPUNINSTALL", lambda rt, tenant, event: None)


def test_a_repeated_onappinstall_is_acknowledged_without_changes(http: Client, b24rt: Runtime, bitrix: Bitrix) -> None:
    installed(http)
    bitrix.oauth_error = "invalid_grant"  # the duplicate's refresh token was used by the first delivery
    assert http.http.post("/b24/install", headers=FORM, body=onappinstall()).status_code == 200
    assert store.load_tokens(b24rt, MEMBER).token_version == 1
    # a different application token with a dead refresh token is still refused
    assert (
        http.http.post("/b24/install", headers=FORM, body=onappinstall(application_token="9" * 32)).status_code == 403
    )
    assert store.verify_application_token(store.get_tenant(b24rt, MEMBER), APP_TOKEN)
