"""Seeding the emulator over its control API, incoming webhooks and a renamed portal, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any

import pytest

from sandbox.bitrix24 import Emulator, EmulatorServer
from sandbox.bitrix24.testing import http, post_json

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator()) as srv:
        yield srv


def control(server: EmulatorServer, path: str, payload: dict[str, Any]) -> Any:
    answer = post_json(f"{server.url}/_emulator/{path}", payload)
    assert answer.status == 200, answer.body
    return answer.json()


def seed(server: EmulatorServer) -> dict[str, Any]:
    control(server, "portals", {"domain": "b24-x.bitrix24.ru"})
    control(server, "apps", {"client_id": "local.1", "client_secret": "s"})
    control(server, "portals/b24-x.bitrix24.ru/users", {"id": 7, "name": "Ivan", "phone_inner": "107"})
    control(server, "portals/b24-x.bitrix24.ru/contacts", {"name": "Client", "phone": "+79260000007"})
    return dict(control(server, "portals/b24-x.bitrix24.ru/install", {"client_id": "local.1"}))


def test_a_portal_seeded_over_http_behaves(server: EmulatorServer) -> None:
    tokens = seed(server)
    answer = post_json(
        tokens["client_endpoint"] + "telephony.externalCall.register",
        {"auth": tokens["access_token"], "USER_PHONE_INNER": "107", "PHONE_NUMBER": "89260000007", "TYPE": 2},
    )
    assert answer.status == 200 and answer.json()["result"]["CRM_ENTITY_TYPE"] == "CONTACT"
    state = http(f"{server.url}/_emulator/state").json()["portals"]["b24-x.bitrix24.ru"]
    assert [c["USER_ID"] for c in state["calls"]] == [7] and state["calls"][0]["cards"] == {"7": True}
    audit = http(f"{server.url}/_emulator/portals/b24-x.bitrix24.ru/audit").json()
    call_id = state["calls"][0]["CALL_ID"]
    assert audit["unfinished"] == [call_id] and audit["open_cards"] == {"7": [call_id]}


# DOC local-integrations/local-webhooks.md; telephony pages: "works only in the context of an application"
def test_incoming_webhooks_and_wrong_auth_type(server: EmulatorServer) -> None:
    seed(server)
    code = control(server, "portals/b24-x.bitrix24.ru/webhook", {"user_id": 7})["code"]
    base = f"{server.url}/b24-x.bitrix24.ru/rest/7/{code}/"
    assert http(base + "user.current.json").json()["result"]["ID"] == "7"
    denied = post_json(base + "telephony.externalCall.register", {"USER_ID": 7, "PHONE_NUMBER": "+1", "TYPE": 2})
    assert (denied.status, denied.json()) == (
        403,
        {"error": "WRONG_AUTH_TYPE", "error_description": "Current authorization type is denied for this method"},
    )
    bad = http(f"{server.url}/b24-x.bitrix24.ru/rest/7/wrongcode/user.current")
    assert (bad.status, bad.json()["error"]) == (401, "INVALID_CREDENTIALS")


# DOC settings/how-to-call-rest-api/change-domen.md
def test_a_renamed_portal_redirects_with_302(server: EmulatorServer) -> None:
    tokens = seed(server)
    server.emulator.rename_portal("b24-x.bitrix24.ru", "acme.bitrix24.ru")
    conn = HTTPConnection(server.host, server.port, timeout=5)
    conn.request("POST", f"/b24-x.bitrix24.ru/rest/user.current?auth={tokens['access_token']}")
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 302
    location = response.getheader("Location") or ""
    assert location.startswith(f"{server.url}/acme.bitrix24.ru/rest/user.current?auth=")
    assert http(location).json()["result"]["ID"] == "1"
