"""The emulator's telephony state machine over real HTTP (DOC api-reference/telephony/*.md)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.bitrix24 import App, Emulator, EmulatorServer, ManualClock, User
from sandbox.bitrix24.server import fetch_url
from sandbox.bitrix24.testing import EventReceiver, http, post_json

pytestmark = pytest.mark.integration

DOMAIN = "acme.bitrix24.com"
CLIENT = "local.pbxlink.1"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def server(clock: ManualClock) -> Iterator[EmulatorServer]:
    emulator = Emulator(clock, fetch=fetch_url)
    with EmulatorServer(emulator) as srv:
        emulator.add_app(App(CLIENT, "s"))
        portal = emulator.add_portal(DOMAIN)
        portal.add_user(User(2, "Anna", phone_inner="101"))
        portal.add_user(User(3, "Boris", phone_inner="102"))
        yield srv


@pytest.fixture
def tokens(server: EmulatorServer) -> dict[str, Any]:
    return server.emulator.install(DOMAIN, CLIENT)[1]


def rest(tokens: dict[str, Any], method: str, **payload: Any) -> tuple[int, Any]:
    answer = post_json(tokens["client_endpoint"] + method, {**payload, "auth": tokens["access_token"]})
    return answer.status, answer.json()


def ok(tokens: dict[str, Any], method: str, **payload: Any) -> Any:
    status, body = rest(tokens, method, **payload)
    assert status == 200, body
    return body["result"]


INBOUND = {"USER_PHONE_INNER": "101", "PHONE_NUMBER": "+79261234567", "TYPE": 2, "LINE_NUMBER": "74951234567"}


# DOC telephony-external-call-register.md: "within 30 minutes ... the same CALL_ID"
def test_register_dedupe_and_external_call_id(tokens: dict[str, Any], clock: ManualClock) -> None:
    first = ok(tokens, "telephony.externalCall.register", **INBOUND, EXTERNAL_CALL_ID="1710140185.18441")
    again = ok(tokens, "telephony.externalcall.register", **INBOUND, EXTERNAL_CALL_ID="1710140185.18441")
    other = ok(tokens, "telephony.externalCall.register", **INBOUND, EXTERNAL_CALL_ID="1710140185.18442")
    assert again["CALL_ID"] == first["CALL_ID"] != other["CALL_ID"]
    clock.advance(30 * 60)
    assert ok(tokens, "telephony.externalCall.register", **INBOUND, EXTERNAL_CALL_ID="1710140185.18441")[
        "CALL_ID"
    ] not in (first["CALL_ID"], other["CALL_ID"])


# DOC telephony-external-call-show.md / -hide.md / -finish.md; the ring-group pattern of the telephony tutorial
def test_ring_group_show_hide_finish(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    portal = server.emulator.portals[DOMAIN]
    call_id = ok(tokens, "telephony.externalCall.register", **INBOUND, SHOW=0, CRM_CREATE=1)["CALL_ID"]
    assert portal.open_cards(2) == []
    assert ok(tokens, "telephony.externalCall.show", CALL_ID=call_id, USER_ID=[2, 3]) is True
    assert {c.call_id for c in portal.open_cards(2)} == {c.call_id for c in portal.open_cards(3)} == {call_id}
    assert ok(tokens, "telephony.externalCall.hide", CALL_ID=call_id, USER_ID=[2]) is True  # Boris answered
    assert portal.open_cards(2) == [] and len(portal.open_cards(3)) == 1
    stat = ok(tokens, "telephony.externalCall.finish", CALL_ID=call_id, USER_PHONE_INNER="102", DURATION=42)
    assert (stat["PORTAL_USER_ID"], stat["CALL_DURATION"], stat["CALL_FAILED_CODE"]) == (3, 42, "200")
    assert stat["CRM_ENTITY_TYPE"] == "LEAD" and stat["CRM_ACTIVITY_ID"] is not None
    assert portal.open_cards(3) == []
    assert portal.leads[stat["CRM_ENTITY_ID"]].assigned == 3  # the lead went to the user who talked
    assert ok(tokens, "telephony.externalCall.hide", CALL_ID=call_id, USER_ID=3) is False
    status, body = rest(tokens, "telephony.externalCall.finish", CALL_ID=call_id, USER_ID=3)
    assert (status, body) == (
        400,
        {
            "error": "ERROR_CORE",
            "error_description": "Call is not found (call should be registered prior to finishing)",
        },
    )


# DOC telephony-external-call-attach-record.md: content, URL and the two-step upload
def test_attach_record_three_ways(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    portal = server.emulator.portals[DOMAIN]
    call_id = ok(tokens, "telephony.externalCall.register", **INBOUND)["CALL_ID"]
    status, early = rest(tokens, "telephony.externalCall.attachRecord", CALL_ID=call_id, FILENAME="r.mp3")
    assert status == 400 and "not finished yet" in early["error_description"]
    ok(tokens, "telephony.externalCall.finish", CALL_ID=call_id, USER_ID=2, DURATION=10)

    content = base64.b64encode(b"ID3-inline").decode()
    ok(tokens, "telephony.externalCall.attachRecord", CALL_ID=call_id, FILENAME="a.mp3", FILE_CONTENT=content)
    record = portal.calls[call_id].record
    assert record is not None and record.content == b"ID3-inline"

    with EventReceiver() as pbx:
        pbx.files["/rec/b.wav"] = b"RIFF-by-url"
        status, blocked = rest(
            tokens, "telephony.externalCall.attachRecord", CALL_ID=call_id, RECORD_URL=f"{pbx.url}/rec/b.wav"
        )
        assert (status, blocked) == (
            400,
            {"error": "", "error_description": "Record URL resolves to a non-public address and was blocked."},
        )
        portal.allow_private_record_urls = True  # a loopback test stands in for a public recording server
        ok(tokens, "telephony.externalCall.attachRecord", CALL_ID=call_id, RECORD_URL=f"{pbx.url}/rec/b.wav")
        record = portal.calls[call_id].record
        assert record is not None and (record.name, record.content) == ("b.wav", b"RIFF-by-url")
        status, missing = rest(
            tokens, "telephony.externalCall.attachRecord", CALL_ID=call_id, RECORD_URL=f"{pbx.url}/x.mp3"
        )
        assert status == 400 and missing["error_description"] == "Server returns HTTP error code 404"

    step = ok(tokens, "telephony.externalCall.attachRecord", CALL_ID=call_id, FILENAME="c.mp3")
    boundary = "----b24"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{step["fieldName"]}"; filename="c.mp3"\r\n'
            "Content-Type: audio/mpeg\r\n\r\n"
        ).encode()
        + b"ID3-uploaded\r\n"
        + f"--{boundary}--\r\n".encode()
    )
    uploaded = http(step["uploadUrl"], body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert uploaded.status == 200 and "FILE_ID" in uploaded.json()["result"]
    record = portal.calls[call_id].record
    assert record is not None and (record.name, record.content) == ("c.mp3", b"ID3-uploaded")
    again = http(step["uploadUrl"], body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert again.status == 400  # the upload token is single-use


# DOC telephony-external-line-add.md etc.
def test_external_lines_over_http(tokens: dict[str, Any]) -> None:
    assert ok(tokens, "telephony.externalLine.add", NUMBER="74951234567", NAME="Main") == {"ID": 1}
    status, body = rest(tokens, "telephony.externalLine.add", NUMBER="74951234567")
    assert (status, body["error_description"]) == (400, "Line already exists")
    assert ok(tokens, "telephony.externalLine.get") == [
        {"NUMBER": "74951234567", "NAME": "Main", "CRM_AUTO_CREATE": "Y"}
    ]


# DOC telephony-external-call-search-crm-entities.md
def test_search_crm_entities(server: EmulatorServer, tokens: dict[str, Any]) -> None:
    portal = server.emulator.portals[DOMAIN]
    contact = portal.add_contact({"NAME": "John Doe", "ASSIGNED_BY_ID": 3, "PHONE": [{"VALUE": "+79261234567"}]})
    [hit] = ok(tokens, "telephony.externalCall.searchCrmEntities", PHONE_NUMBER="89261234567")
    assert (hit["CRM_ENTITY_TYPE"], hit["CRM_ENTITY_ID"], hit["ASSIGNED_BY_ID"], hit["NAME"]) == (
        "CONTACT",
        contact.id,
        3,
        "John Doe",
    )
    assert hit["ASSIGNED_BY"]["USER_PHONE_INNER"] == "102"
