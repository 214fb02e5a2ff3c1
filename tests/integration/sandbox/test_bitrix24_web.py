"""The emulator's web page: a finished call as a person would see it in the portal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.bitrix24 import App, Emulator, EmulatorServer, User
from sandbox.bitrix24.testing import EventReceiver, http, post_form, post_json

pytestmark = pytest.mark.integration

DOMAIN = "acme.bitrix24.com"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    emulator = Emulator()
    with EmulatorServer(emulator) as srv:
        emulator.add_app(App("local.app", "s", name="pbxlink"))
        portal = emulator.add_portal(DOMAIN)
        portal.add_user(User(2, "Anna", "Petrova", phone_inner="101"))
        portal.add_user(User(3, "Boris", "Ivanov", phone_inner="102"))
        yield srv


def test_the_page_shows_cards_the_call_log_leads_and_recordings(server: EmulatorServer) -> None:
    tokens = server.emulator.install(DOMAIN, "local.app")[1]

    def rest(method: str, **payload: object) -> dict[str, Any]:
        answer = post_json(tokens["client_endpoint"] + method, {**payload, "auth": tokens["access_token"]})
        assert answer.status == 200, answer.body
        result = answer.json()["result"]
        return result if isinstance(result, dict) else {"result": result}

    done = rest("telephony.externalCall.register", USER_ID=2, PHONE_NUMBER="+79261234567", TYPE=2, CRM_CREATE=1)
    rest("telephony.externalCall.finish", CALL_ID=done["CALL_ID"], USER_ID=3, DURATION=95)
    rest("telephony.externalCall.attachRecord", CALL_ID=done["CALL_ID"], FILENAME="talk.mp3", FILE_CONTENT="SUQz")
    ringing = rest("telephony.externalCall.register", USER_ID=2, PHONE_NUMBER="+74950000000", TYPE=2)

    index = http(server.url + "/")
    assert index.status == 200 and f"/portal/{DOMAIN}".encode() in index.body
    page = http(f"{server.url}/portal/{DOMAIN}")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.body.decode()
    log = html.split("<h2>Call log</h2>", 1)[1].split("<h2>", 1)[0]
    assert "200 answered" in log and "95 s" in log and "Boris Ivanov" in log and "talk.mp3" in log
    assert "in progress" in log and ringing["CALL_ID"] in log
    cards = html.split("<h2>Employees and their call cards</h2>", 1)[1].split("<h2>", 1)[0]
    anna_row = cards.split("Anna Petrova", 1)[1].split("</tr>", 1)[0]
    assert "+74950000000" in anna_row and "(shown)" in anna_row
    leads = html.split("<h2>Leads</h2>", 1)[1].split("<h2>", 1)[0]
    assert "+79261234567" in leads and "Boris Ivanov" in leads  # the created lead went to the one who talked
    link = f"/_emulator/files/{DOMAIN}/"
    file_id = log.split(link, 1)[1].split("'", 1)[0]
    assert http(f"{server.url}{link}{file_id}").body == b"ID3"


def test_the_click_to_call_form_triggers_onexternalcallstart(server: EmulatorServer) -> None:
    tokens = server.emulator.install(DOMAIN, "local.app")[1]
    with EventReceiver() as app:
        post_json(
            tokens["client_endpoint"] + "event.bind",
            {"auth": tokens["access_token"], "event": "ONEXTERNALCALLSTART", "handler": f"{app.url}/c2c"},
        )
        page = http(f"{server.url}/portal/{DOMAIN}").body.decode()
        assert f"action='/_emulator/portals/{DOMAIN}/click'" in page
        answer = post_form(f"{server.url}/_emulator/portals/{DOMAIN}/click", {"user_id": "3", "phone": "+15551234"})
        assert answer.status == 200
        [post] = app.wait(1)
        assert post.form["data"]["USER_ID"] == "3" and post.form["data"]["PHONE_NUMBER"] == "+15551234"


def test_clicking_a_number_in_a_crm_card_sends_the_entity(server: EmulatorServer) -> None:
    # DOC telephony/events/on-external-call-start.md: CRM_ENTITY_TYPE / CRM_ENTITY_ID of the card clicked
    portal = server.emulator.portals[DOMAIN]
    contact = portal.add_contact({"NAME": "John", "PHONE": [{"VALUE": "+79031112233"}]})
    tokens = server.emulator.install(DOMAIN, "local.app")[1]
    with EventReceiver() as app:
        post_json(
            tokens["client_endpoint"] + "event.bind",
            {"auth": tokens["access_token"], "event": "ONEXTERNALCALLSTART", "handler": f"{app.url}/c2c"},
        )
        contacts = http(f"{server.url}/portal/{DOMAIN}").body.decode().split("<h2>Contacts</h2>", 1)[1]
        assert "name='crm_entity_type' value='CONTACT'" in contacts.split("<h2>", 1)[0]
        form = {"phone": "+79031112233", "crm_entity_type": "CONTACT", "crm_entity_id": str(contact.id), "user_id": "2"}
        assert post_form(f"{server.url}/_emulator/portals/{DOMAIN}/click", form).status == 200
        data = app.wait(1)[0].form["data"]
        assert (data["CRM_ENTITY_TYPE"], data["CRM_ENTITY_ID"], data["USER_ID"]) == ("CONTACT", str(contact.id), "2")
