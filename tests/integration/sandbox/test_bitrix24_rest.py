"""The Bitrix24 emulator over real HTTP on 127.0.0.1: envelopes, errors, OAuth, expiry, limits, batch, users, CRM."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from sandbox.bitrix24 import App, Emulator, EmulatorServer, ManualClock, User
from sandbox.bitrix24.portal import METHODS
from sandbox.bitrix24.testing import http, post_form, post_json

pytestmark = pytest.mark.integration

DOMAIN = "acme.bitrix24.com"
CLIENT, SECRET = "local.pbxlink.1", "s3cret"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def server(clock: ManualClock) -> Iterator[EmulatorServer]:
    emulator = Emulator(clock)
    with EmulatorServer(emulator) as srv:
        emulator.add_app(App(CLIENT, SECRET))
        portal = emulator.add_portal(DOMAIN)
        for uid in range(2, 62):
            portal.add_user(User(uid, f"User{uid}", phone_inner=str(100 + uid)))
        yield srv


@pytest.fixture
def tokens(server: EmulatorServer) -> dict[str, Any]:
    return server.emulator.install(DOMAIN, CLIENT)[1]


def rest(tokens: dict[str, Any], method: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
    answer = post_json(tokens["client_endpoint"] + method, {**(payload or {}), "auth": tokens["access_token"]})
    return answer.status, answer.json()


# DOC settings/how-to-call-rest-api/general-principles.md, api-reference/data-types.md#time
def test_request_forms_and_the_success_envelope(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    endpoint, token = tokens["client_endpoint"], tokens["access_token"]
    assert endpoint == f"{server.url}/{DOMAIN}/rest/"
    by_query = http(f"{endpoint}user.current.json?auth={token}")
    assert by_query.status == 200 and by_query.headers["Content-Type"].startswith("application/json")
    body = by_query.json()
    assert body["result"]["ID"] == "1" and {"start", "finish", "duration", "date_start"} <= set(body["time"])
    by_form = post_form(f"{server.url}/rest/USER.GET", [("auth", token), ("FILTER[UF_PHONE_INNER]", "102")])
    assert [u["ID"] for u in by_form.json()["result"]] == ["2"] and by_form.json()["total"] == 1
    by_json = post_json(f"{endpoint}telephony.externalcall.searchcrmentities", {"auth": token, "PHONE_NUMBER": "1"})
    assert by_json.json()["result"] == []


# DOC _includes/system-errors.md
def test_error_envelopes_and_statuses(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    endpoint = tokens["client_endpoint"]
    cases = [
        (f"{endpoint}user.current", 401, "NO_AUTH_FOUND", "Wrong authorization data"),
        (f"{endpoint}user.current?auth=junk", 401, "invalid_token", "Unable to get application by token"),
        (f"{endpoint}no.such.method?auth={tokens['access_token']}", 404, "ERROR_METHOD_NOT_FOUND", "Method not found!"),
    ]
    for url, status, code, description in cases:
        answer = http(url)
        assert (answer.status, answer.json()) == (status, {"error": code, "error_description": description}), url
    status, body = rest(tokens, "telephony.externalCall.register", {"PHONE_NUMBER": "+1", "TYPE": 2})
    assert (status, body) == (
        400,
        {"error": "ERROR_CORE", "error_description": "USER_ID or USER_PHONE_INNER should be set"},
    )


# DOC settings/oauth/index.md, auto-renewal.md; protocols.md §A3
def test_oauth_rotation_reuse_and_expiry(server: EmulatorServer, tokens: dict[str, Any], clock: ManualClock) -> None:
    oauth = f"{server.url}/oauth/token/"
    query = {"grant_type": "refresh_token", "client_id": CLIENT, "client_secret": SECRET}
    clock.advance(3600)
    expired = http(f"{tokens['client_endpoint']}user.current?auth={tokens['access_token']}")
    assert (expired.status, expired.json()) == (
        401,
        {"error": "expired_token", "error_description": "The access token provided has expired."},
    )
    fresh = http(oauth + "?" + urlencode({**query, "refresh_token": tokens["refresh_token"]}))  # GET, as documented
    assert fresh.status == 200
    pair = fresh.json()
    assert pair["refresh_token"] != tokens["refresh_token"] and pair["expires_in"] == 3600
    assert pair["client_endpoint"] == tokens["client_endpoint"]
    assert http(f"{pair['client_endpoint']}user.current?auth={pair['access_token']}").status == 200
    reused = post_form(oauth, {**query, "refresh_token": tokens["refresh_token"]})  # form POST works too
    assert (reused.status, reused.json()) == (400, {"error": "invalid_grant"})
    wrong = post_form(oauth, {**query, "client_id": "app.other", "refresh_token": pair["refresh_token"]})
    assert (wrong.status, wrong.json()) == (200, {"error": "wrong_client"})


# DOC limits.md
def test_rate_limit_is_a_leaky_bucket(server: EmulatorServer, tokens: dict[str, Any], clock: ManualClock) -> None:
    url = f"{tokens['client_endpoint']}user.current?auth={tokens['access_token']}"
    statuses = [http(url).status for _ in range(51)]
    assert statuses[:50] == [200] * 50
    limited = http(url)
    assert (limited.status, limited.json()) == (
        503,
        {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
    )
    clock.advance(1.0)  # 2 requests drained
    assert [http(url).status for _ in range(3)] == [200, 200, 503]


# DOC settings/how-to-call-rest-api/batch.md (form, CRest-style double encoding)
def test_batch_over_form_with_substitution(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    register = "telephony.externalCall.register?" + urlencode(
        {"USER_PHONE_INNER": "102", "PHONE_NUMBER": "+79261234567", "TYPE": "2", "SHOW": "0"}
    )
    show = "telephony.externalCall.show?CALL_ID=$result[reg][CALL_ID]&USER_ID[0]=2&USER_ID[1]=3"
    hide = "telephony.externalCall.hide?" + urlencode({"CALL_ID": "$result[reg][CALL_ID]", "USER_ID": "3"})
    body = "&".join(
        [
            f"auth={tokens['access_token']}",
            "halt=0",
            f"cmd[reg]={quote(register, safe='')}",
            f"cmd[show]={quote(show, safe='')}",
            f"cmd[hide]={quote(hide, safe='')}",
            f"cmd[fail]={quote('telephony.externalCall.finish?CALL_ID=x&USER_ID=2', safe='')}",
        ]
    )
    answer = http(
        f"{tokens['client_endpoint']}batch", body.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status == 200
    result = answer.json()["result"]
    call_id = result["result"]["reg"]["CALL_ID"]
    assert result["result"]["show"] is True and result["result"]["hide"] is True
    assert result["result_error"]["fail"]["error"] == "ERROR_CORE"
    assert server.emulator.portals[DOMAIN].calls[call_id].cards == {2: True, 3: False}


# DOC api-reference/user/user-get.md
def test_user_get_pagination_and_inner_number(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    seen: list[str] = []
    start: int | None = 0
    while start is not None:
        status, page = rest(tokens, "user.get", {"sort": "ID", "order": "ASC", "start": start})
        assert status == 200 and page["total"] == 61 and len(page["result"]) <= 50
        seen += [u["ID"] for u in page["result"]]
        start = page.get("next")
    assert seen == [str(i) for i in range(1, 62)]
    _, by_ext = rest(tokens, "user.get", {"FILTER": {"UF_PHONE_INNER": "161", "ACTIVE": True}})
    assert [(u["ID"], u["UF_PHONE_INNER"]) for u in by_ext["result"]] == [("61", "161")]


# DOC crm/duplicates/crm-duplicate-find-by-comm.md, crm/leads/crm-lead-add.md, crm/contacts/crm-contact-add.md
def test_duplicates_and_lead_creation(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    endpoint = tokens["client_endpoint"]
    form = [
        ("auth", tokens["access_token"]),
        ("fields[TITLE]", "Incoming call"),
        ("fields[PHONE][0][VALUE]", "+79261234567"),
        ("fields[PHONE][0][VALUE_TYPE]", "WORK"),
        ("fields[SOURCE_ID]", "CALL"),
    ]
    added = post_form(f"{endpoint}crm.lead.add", form).json()
    assert isinstance(added["result"], int)
    _, contact = rest(tokens, "crm.contact.add", {"FIELDS": {"NAME": "Ann", "PHONE": [{"VALUE": "89031112233"}]}})
    _, found = rest(tokens, "crm.duplicate.findbycomm", {"type": "PHONE", "values": ["79261234567", "+79031112233"]})
    assert found["result"] == {"LEAD": [added["result"]], "CONTACT": [contact["result"]]}
    _, none = rest(tokens, "crm.duplicate.findbycomm", {"type": "PHONE", "values": ["000"]})
    assert none["result"] == []
    status, body = rest(tokens, "crm.duplicate.findbycomm", {"values": ["1"]})
    assert status == 400 and body["error"] == "Communication type is not defined"
    lead = server.emulator.portals[DOMAIN].leads[added["result"]]
    assert lead.fields["PHONE"] == [{"VALUE": "+79261234567", "VALUE_TYPE": "WORK"}]
    assert json.loads(json.dumps(lead.fields))["SOURCE_ID"] == "CALL"


def test_keep_alive_requests_are_fast(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    """No Nagle/delayed-ACK stall (~40 ms a request): the ring-to-card benchmark measures through this server."""
    conn = HTTPConnection(server.host, server.port, timeout=5)
    path = f"/{DOMAIN}/rest/user.current?auth={tokens['access_token']}"
    started = time.perf_counter()
    for _ in range(20):
        conn.request("POST", path, b"{}", {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["result"]["ID"] == "1"
    elapsed = time.perf_counter() - started
    conn.close()
    assert elapsed < 0.4, f"20 keep-alive requests took {elapsed:.3f} s"


def test_an_emulator_bug_answers_like_a_broken_portal(
    server: EmulatorServer, tokens: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: object) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setitem(METHODS, "user.current", boom)
    answer = http(f"{tokens['client_endpoint']}user.current?auth={tokens['access_token']}")
    assert (answer.status, answer.json()["error"]) == (500, "INTERNAL_SERVER_ERROR")
