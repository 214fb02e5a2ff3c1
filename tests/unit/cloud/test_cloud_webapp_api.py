"""Every section of the settings API through the app's routes, a portal admin of the emulator calling."""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice.test import Client
from cloud_builders import AT, ended, ringing, started
from webapp_builders import AGENT_WS_URL, ANNA, BORIS, OLGA, Portals, body

from cloud import licensing
from cloud.agents import connections, tokens
from cloud.agents.status import touch
from cloud.calls.store import record_event
from cloud.crm.directory import load_directory, save_directory
from cloud.crm.operations import Register
from cloud.crm.progress import ClientInfo, CrmProgress, LegProgress
from cloud.crm.settings import CrmSettings, load_settings, save_settings
from cloud.errors import RevokedAgent
from cloud.runtime import Runtime
from cloud.storage.dynamo import to_item
from cloud.webapp import form, hooks, status
from cloud.webapp.api import agent_command
from wire_protocol.call_events import CallStarted

pytest_plugins = ["cloud_testkit", "webapp_testkit"]


def get(web: Client, b24: Portals, path: str, user: int = OLGA, portal: str = "acme") -> Any:
    response = web.http.get(path, headers=b24.headers(portal, user))
    assert response.status_code == 200, response.body
    return body(response)


def send(web: Client, b24: Portals, method: str, path: str, payload: Any, user: int = OLGA) -> Any:
    return web.http.request(method, path, headers=b24.headers("acme", user), body=json.dumps(payload).encode())


# -- status ------------------------------------------------------------------------------------------------------
def test_status_shows_each_agent_its_connection_versions_and_last_event(
    webrt: Runtime, b24: Portals, web: Client
) -> None:
    tenant = b24.member("acme")
    online, _ = tokens.issue_token(webrt, tenant, "Head office")
    tokens.issue_token(webrt, tenant, "Branch")
    revoked, _ = tokens.issue_token(webrt, tenant, "Old PBX")
    tokens.revoke(webrt, tenant, revoked)
    connections.record(webrt, tenant, online, "CONN1=", connected_at=int(datetime.now(UTC).timestamp()) - 60)
    touch(webrt, tenant, online, agent_version="0.1.0", pbx_version="22.1.0", ami_version="9.0.0", ami_connected=True)
    record_event(webrt, tenant, online, 1, started(call_id="1764140000.5"))
    tokens.issue_token(webrt, b24.member("beta"), "Someone else's")

    data = get(web, b24, "/b24/api/status", user=ANNA)  # any user of the portal sees the status
    by_name = {a["name"]: a for a in data["agents"]}
    assert list(by_name) == ["Branch", "Head office", "Old PBX"]  # revoked last; beta's agent absent
    head = by_name["Head office"]
    assert (head["state"], head["agent_version"], head["pbx_version"], head["ami_connected"]) == (
        "online",
        "0.1.0",
        "22.1.0",
        True,
    )
    assert head["connected_since"] is not None and head["last_seen_at"] is not None
    assert head["last_event"] == {"at": AT.isoformat(), "type": "call_started", "call_id": "1764140000.5"}
    assert (by_name["Branch"]["state"], by_name["Branch"]["connected_since"], by_name["Branch"]["last_event"]) == (
        "offline",
        None,
        None,
    )
    assert by_name["Old PBX"]["state"] == "revoked"
    assert data["viewer"] == {"tenant": tenant, "user_id": ANNA, "name": "Anna Petrova", "admin": False}


def test_license_is_unknown_when_it_cannot_be_read(b24: Portals, web: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(rt: Runtime, tenant: str, now: datetime) -> Any:
        raise RuntimeError("DynamoDB throttled")

    monkeypatch.setattr(licensing, "entitlements", broken)
    assert get(web, b24, "/b24/api/status")["license"] == {"state": "unknown", "available": False}


def test_license_of_a_portal_never_leased_is_the_free_tier(b24: Portals, web: Client) -> None:
    license_ = get(web, b24, "/b24/api/status")["license"]  # the real cloud.licensing, no lease cached
    assert (license_["state"], license_["available"], license_["plan"]) == ("restricted", True, "free")
    assert license_["users_with_cards"] == {"used": 0, "limit": 2}


@pytest.fixture
def fake_licensing(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A stand-in for ``cloud.licensing`` (``entitlements``, ``card_users``) in a state hard to reach for real."""
    asked: list[str] = []
    module = types.ModuleType("cloud.licensing")

    def entitlements(rt: Runtime, tenant: str, now: datetime) -> Any:
        asked.append(tenant)
        return types.SimpleNamespace(
            state="grace",
            plan="business",
            ends_at=datetime(2026, 12, 1, tzinfo=UTC),
            grace_ends_at=datetime(2026, 12, 8, tzinfo=UTC),
            reason="the license server could not be reached",
            features=frozenset({"click_to_call", "recordings"}),
            limits=types.SimpleNamespace(users_with_cards=10, agents=None),
        )

    module.entitlements = entitlements  # type: ignore[attr-defined]
    module.card_users = lambda rt, tenant: ["11", "12"]  # type: ignore[attr-defined]
    monkeypatch.setattr(status, "licensing", module)  # the module under test reads it by this name
    yield asked


def test_license_state_comes_from_cloud_licensing_when_present(
    b24: Portals, web: Client, fake_licensing: list[str]
) -> None:
    license_ = get(web, b24, "/b24/api/status")["license"]
    assert license_ == {
        "state": "grace",
        "available": True,
        "plan": "business",
        "ends_at": "2026-12-01T00:00:00+00:00",
        "grace_ends_at": "2026-12-08T00:00:00+00:00",
        "reason": "the license server could not be reached",
        "features": ["click_to_call", "recordings"],
        "users_with_cards": {"used": 2, "limit": 10},
        "card_users": [
            {"id": "11", "name": "", "has_card": True},  # names once the users were read from Bitrix24
            {"id": "12", "name": "", "has_card": True},
        ],
    }
    assert fake_licensing == [b24.member("acme")]


def test_an_admin_frees_a_place_among_the_users_who_keep_call_cards(webrt: Runtime, b24: Portals, web: Client) -> None:
    from cloud.licensing.store import load_card_users, record_card_users

    tenant = b24.member("acme")
    get(web, b24, "/b24/api/extensions")  # reads the users: the order shows names
    record_card_users(webrt, tenant, [str(ANNA), str(BORIS), str(OLGA)])  # the order they first rang in
    cards = get(web, b24, "/b24/api/status", user=ANNA)["license"]["card_users"]
    assert cards == [
        {"id": str(ANNA), "name": "Anna Petrova", "has_card": True},  # the free tier: 2 users keep cards
        {"id": str(BORIS), "name": "Boris Ivanov", "has_card": True},
        {"id": str(OLGA), "name": "Olga Owner", "has_card": False},
    ]
    assert send(web, b24, "DELETE", f"/b24/api/card_users/{ANNA}", None, user=ANNA).status_code == 403
    response = send(web, b24, "DELETE", f"/b24/api/card_users/{ANNA}", None)
    assert response.status_code == 200 and body(response) == {"card_order": [str(BORIS), str(OLGA)]}
    assert load_card_users(webrt, tenant) == [str(BORIS), str(OLGA)]
    assert send(web, b24, "DELETE", "/b24/api/card_users/not-a-user", None).status_code == 404


# -- tokens ------------------------------------------------------------------------------------------------------
def test_a_token_is_shown_once_with_the_command_to_run_and_works(webrt: Runtime, b24: Portals, web: Client) -> None:
    response = send(web, b24, "POST", "/b24/api/tokens", {"name": "  Head office  "})
    assert response.status_code == 200
    created = body(response)
    assert created["name"] == "Head office"
    assert created["command"] == f"EDGE_CLOUD_URL={AGENT_WS_URL} EDGE_TOKEN={created['token']} edge-agent run"
    agent = tokens.authenticate(webrt, created["token"])
    assert (agent.tenant, agent.agent_id, agent.name) == (b24.member("acme"), created["agent_id"], "Head office")
    status = json.dumps(get(web, b24, "/b24/api/status"))
    assert created["agent_id"] in status and created["token"] not in status  # never shown again


@pytest.mark.parametrize("payload", [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": "a\nb"}, []])
def test_a_token_needs_a_name(b24: Portals, web: Client, payload: Any) -> None:
    response = send(web, b24, "POST", "/b24/api/tokens", payload)
    assert response.status_code == 400 and body(response)["error"] == "invalid_name"


def test_revoking_cuts_the_agent_off_and_only_in_its_own_tenant(webrt: Runtime, b24: Portals, web: Client) -> None:
    mine, token = tokens.issue_token(webrt, b24.member("acme"), "HQ")
    theirs, _ = tokens.issue_token(webrt, b24.member("beta"), "HQ")
    assert send(web, b24, "DELETE", f"/b24/api/tokens/{theirs}", None).status_code == 404
    assert not tokens.get_agent(webrt, b24.member("beta"), theirs).revoked
    assert send(web, b24, "DELETE", "/b24/api/tokens/not-an-agent", None).status_code == 404
    response = send(web, b24, "DELETE", f"/b24/api/tokens/{mine}", None)
    assert response.status_code == 200 and body(response) == {"revoked": mine, "disconnected": False}
    with pytest.raises(RevokedAgent):
        tokens.authenticate(webrt, token)


def test_the_command_builds_the_websocket_url_from_the_api_id_when_no_url_is_set(webrt: Runtime) -> None:
    import dataclasses

    webrt.settings = dataclasses.replace(webrt.settings, agent_ws_url="", ws_api_id="abc123", ws_stage="api")
    url, command = agent_command(webrt, "pbxl_x")
    assert url == "wss://abc123.execute-api.us-east-1.amazonaws.com/api"
    assert command == f"EDGE_CLOUD_URL={url} EDGE_TOKEN=pbxl_x edge-agent run"


# -- extensions --------------------------------------------------------------------------------------------------
def test_extensions_come_from_bitrix24_with_overrides_and_the_unmapped_ones(
    webrt: Runtime, b24: Portals, web: Client
) -> None:
    tenant = b24.member("acme")
    data = get(web, b24, "/b24/api/extensions")  # first look: users read from Bitrix24 (user.get)
    assert {(e["extension"], e["user_id"], e["source"]) for e in data["extensions"]} == {
        ("101", ANNA, "bitrix24"),
        ("102", BORIS, "bitrix24"),
    }
    assert {u["id"] for u in data["users"]} == {OLGA, ANNA, BORIS} and data["fetched_at"]
    directory = load_directory(webrt, tenant)
    seen = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    save_directory(webrt, tenant, directory.model_copy(update={"unmapped": {"104": seen, "105": seen}}))
    assert [u["extension"] for u in get(web, b24, "/b24/api/extensions")["unmapped"]] == ["104", "105"]

    overrides = {"102": None, "103": OLGA, "104": BORIS}
    assert send(web, b24, "PATCH", "/b24/api/settings", {"extension_overrides": overrides}).status_code == 200
    data = get(web, b24, "/b24/api/extensions")
    rows = {e["extension"]: (e["user_id"], e["source"], e["bitrix24_user_id"]) for e in data["extensions"]}
    assert rows == {
        "101": (ANNA, "bitrix24", ANNA),
        "102": (None, "override", BORIS),
        "103": (OLGA, "override", None),
        "104": (BORIS, "override", None),
    }
    assert [u["extension"] for u in data["unmapped"]] == ["105"]  # 104 has a user now
    assert load_settings(webrt, tenant).extension_overrides == {"102": None, "103": OLGA, "104": BORIS}
    overrides["105"] = None  # deliberately nobody: listed with the others, no longer "seen with no user"
    assert send(web, b24, "PATCH", "/b24/api/settings", {"extension_overrides": overrides}).status_code == 200
    data = get(web, b24, "/b24/api/extensions")
    assert data["unmapped"] == [] and ("105", None, "override") in {
        (e["extension"], e["user_id"], e["source"]) for e in data["extensions"]
    }


def test_extensions_still_show_when_bitrix24_cannot_be_read(webrt: Runtime, b24: Portals, web: Client) -> None:
    headers = b24.headers("acme", OLGA)  # one token: its check is cached, only user.get meets the fault

    def extensions(path: str = "/b24/api/extensions") -> Any:
        response = web.http.get(path, headers=headers)
        assert response.status_code == 200, response.body
        return body(response)

    extensions()
    b24.emulator.faults.server_error_rate = 1.0
    assert extensions("/b24/api/extensions?refresh=1")["warning"] is None  # read less than a minute ago: not again
    directory = load_directory(webrt, b24.member("acme"))
    save_directory(webrt, b24.member("acme"), directory.model_copy(update={"fetched_at": AT}))
    data = extensions()
    assert data["warning"] == "users_unavailable" and [e["extension"] for e in data["extensions"]] == ["101", "102"]


# -- settings ----------------------------------------------------------------------------------------------------
def test_the_form_is_the_schema(b24: Portals, web: Client) -> None:
    data = get(web, b24, "/b24/api/settings")
    assert data["settings"] == CrmSettings().model_dump(mode="json")
    described = {spec["path"] for spec in data["form"]}
    assert described == set(CrmSettings.model_fields) - {"schema_version"}
    assert {a["name"] for a in data["agents"]} == set()
    assert {u["id"] for u in data["users"]} == {OLGA, ANNA, BORIS}


def test_valid_settings_are_saved_and_the_hooks_run(webrt: Runtime, b24: Portals, web: Client) -> None:
    called: list[tuple[Runtime, str]] = []

    def push_settings(rt: Runtime, tenant: str) -> None:
        called.append((rt, tenant))

    hooks.on_settings_saved(push_settings)
    try:
        change = {
            "lines": {"+74951234567": {"name": "Sales", "default_owner": ANNA, "lead_source": "WEB"}},
            "card_mode_by_user": {str(BORIS): "answer"},
            "missed_owner": ["last_rang", "default"],
            "create_client": "on_missed",
            "register_internal": True,
            "click_to_call": {
                "allowed_patterns": ["+7XXXXXXXXXX"],
                "originate": {"prefix": "9", "context": "from-crm"},
                "caller_id": "+74951234567",
            },
            "recordings": {"enabled": False},
        }
        response = send(web, b24, "PATCH", "/b24/api/settings", change)
        assert response.status_code == 200, response.body
        assert body(response)["hooks_failed"] == []
    finally:
        hooks.remove_settings_hook(push_settings)
    saved = load_settings(webrt, b24.member("acme"))
    assert saved.line("+74951234567").default_owner == ANNA and saved.lead_source("+74951234567") == "WEB"
    assert saved.card_mode_of(BORIS) == "answer" and saved.card_mode_of(ANNA) == "ring"
    assert saved.missed_owner == ["last_rang", "default"] and saved.register_internal
    assert saved.click_to_call.originate.prefix == "9" and saved.click_to_call.originate.ring_seconds == 30
    assert not saved.recordings.enabled
    assert called == [(webrt, b24.member("acme"))]


def test_invalid_settings_name_every_bad_field_and_save_nothing(webrt: Runtime, b24: Portals, web: Client) -> None:
    tenant = b24.member("acme")
    save_settings(webrt, tenant, CrmSettings(register_internal=True))
    called: list[str] = []
    hook = hooks.on_settings_saved(lambda rt, t: called.append(t))
    try:
        change = {
            "card_mode": "sometimes",
            "register_internal": False,
            "click_to_call": {"originate": {"prefix": "abc"}, "per_user_per_minute": 0},
            "lines": {"+7495": {"name": "x" * 101}},
            "missed_owner": ["default", "default"],
            "no_such_field": 1,
        }
        response = send(web, b24, "PATCH", "/b24/api/settings", change)
    finally:
        hooks.remove_settings_hook(hook)
    assert response.status_code == 400
    answer = body(response)
    assert answer["error"] == "invalid_settings" and answer["message"].startswith("settings not saved: ")
    assert set(answer["fields"]) == {
        "card_mode",
        "click_to_call.originate.prefix",
        "click_to_call.per_user_per_minute",
        "lines.+7495.name",
        "missed_owner",
        "no_such_field",
    }
    for path in answer["fields"]:
        assert path in answer["message"]
    assert load_settings(webrt, tenant).register_internal is True and called == []


@pytest.mark.parametrize("payload", [[], "x", {}, None])
def test_a_settings_change_must_be_an_object_of_fields(b24: Portals, web: Client, payload: Any) -> None:
    response = send(web, b24, "PATCH", "/b24/api/settings", payload)
    assert response.status_code == 400


def test_a_failing_hook_does_not_undo_the_save(webrt: Runtime, b24: Portals, web: Client) -> None:
    def broken(rt: Runtime, tenant: str) -> None:
        raise RuntimeError("agents unreachable")

    hooks.on_settings_saved(broken)
    try:
        response = send(web, b24, "PATCH", "/b24/api/settings", {"add_to_chat": False})
    finally:
        hooks.remove_settings_hook(broken)
    assert response.status_code == 200 and body(response)["hooks_failed"] == ["broken"]
    assert load_settings(webrt, b24.member("acme")).add_to_chat is False


def test_saved_settings_are_pushed_to_the_connected_agents(
    webrt: Runtime, b24: Portals, web: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    pushed: list[str] = []

    def push_settings(rt: Runtime, tenant: str) -> list[str]:
        pushed.append(tenant)
        return []

    monkeypatch.setattr(hooks, "push_settings", push_settings)
    assert send(web, b24, "PATCH", "/b24/api/settings", {"add_to_chat": False}).status_code == 200
    assert pushed == [b24.member("acme")]

    def unreachable(rt: Runtime, tenant: str) -> list[str]:
        raise RuntimeError("the gateway is down")

    monkeypatch.setattr(hooks, "push_settings", unreachable)  # the settings stay saved; the page says so
    response = send(web, b24, "PATCH", "/b24/api/settings", {"add_to_chat": True})
    assert response.status_code == 200 and body(response)["hooks_failed"] == ["push_to_agents"]


def test_validate_maps_key_errors_to_the_key_path() -> None:
    settings, message, fields = form.validate({"card_mode_by_user": {"abc": "ring"}})
    assert settings is None and list(fields) == ["card_mode_by_user.abc"] and "card_mode_by_user" in message


# -- calls -------------------------------------------------------------------------------------------------------
def _crm_item(rt: Runtime, tenant: str, agent_id: str, call_id: str, progress: CrmProgress, **extra: Any) -> None:
    item = {"tenant": tenant, "call_key": f"{agent_id}#{call_id}", "progress": progress.model_dump_json(), **extra}
    rt.dynamodb.put_item(TableName=rt.tables.crm_calls, Item=to_item(item))


def test_recent_calls_show_what_was_done_in_bitrix24_for_each(webrt: Runtime, b24: Portals, web: Client) -> None:
    tenant = b24.member("acme")
    agent, _ = tokens.issue_token(webrt, tenant, "HQ")
    get(web, b24, "/b24/api/extensions")  # reads the users: the trace names them
    answered, waiting = "1764140000.5", "1764140100.7"
    record_event(webrt, tenant, agent, 1, started(answered, 1))
    record_event(webrt, tenant, agent, 2, ringing("101", answered, 2))
    record_event(webrt, tenant, agent, 3, ended(answered, 3))
    later = CallStarted(
        call_id=waiting,
        seq=1,
        at=AT + timedelta(minutes=2),
        direction="outbound",
        external_number="79260000000",
        line=None,
        caller_extension="102",
    )
    record_event(webrt, tenant, agent, 4, later)
    register = Register(
        leg=0,
        user_id=ANNA,
        phone_number="+79261234567",
        call_type=2,
        line_number="74950000000",
        external_call_id=f"{agent}:{answered}:0",
        call_start_date=AT.isoformat(),
    )
    leg = LegProgress(
        registered_with=register,
        call_id="externalCall.0f1e2d.1764140000",
        shown_to=(ANNA, BORIS),
        finished=True,
        finished_as="200",
        crm_entity_type="CONTACT",
        crm_entity_id=5,
    )
    progress = CrmProgress(legs={0: leg}, client=ClientInfo(entity_type="CONTACT", entity_id=5, responsible_id=OLGA))
    _crm_item(
        webrt, tenant, agent, answered, progress.model_copy(update={"requests": 4}), crm_status="done", requests=4
    )
    other, _ = tokens.issue_token(webrt, b24.member("beta"), "HQ")
    record_event(webrt, b24.member("beta"), other, 1, started("1764140200.1", 1))

    calls = get(web, b24, "/b24/api/calls")["calls"]
    assert [c["call_id"] for c in calls] == [waiting, answered]  # newest first; beta's call is not here
    done = calls[1]
    assert (done["direction"], done["result"], done["answered_by"], done["rang"]) == (
        "inbound",
        "answered",
        "101",
        ["101"],
    )
    crm = done["crm"]
    assert (crm["status"], crm["requests"]) == ("done", 4)
    assert crm["client"] == {"entity": "CONTACT 5", "responsible": {"id": OLGA, "name": "Olga Owner"}}
    [only] = crm["legs"]
    assert only["b24_call_id"] == "externalCall.0f1e2d.1764140000" and only["finished_as"] == "200"
    assert only["user"] == {"id": ANNA, "name": "Anna Petrova"}
    assert [u["name"] for u in only["shown_to"]] == ["Anna Petrova", "Boris Ivanov"]
    assert calls[0]["crm"] is None and calls[0]["result"] is None
    assert [c["call_id"] for c in get(web, b24, "/b24/api/calls?limit=1")["calls"]] == [waiting]


@pytest.mark.parametrize("limit", ["0", "201", "x", "-1"])
def test_calls_limit_is_checked(b24: Portals, web: Client, limit: str) -> None:
    assert web.http.get(f"/b24/api/calls?limit={limit}", headers=b24.headers("acme", OLGA)).status_code == 400


def test_unknown_sections_are_404(b24: Portals, web: Client) -> None:
    assert web.http.get("/b24/api/nothing", headers=b24.headers("acme", OLGA)).status_code == 404
    assert send(web, b24, "DELETE", "/b24/api/settings/x", None).status_code == 404
