"""The portal's rules without sockets, each against the docs page it comes from (GitHub bitrix24/b24restdocs)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sandbox.bitrix24 import App, Emulator, ManualClock, Portal, RestError, User
from sandbox.bitrix24.portal import Context

DOMAIN = "acme.bitrix24.com"
CLIENT = "local.app.1"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def em(clock: ManualClock) -> Emulator:
    emulator = Emulator(clock, fetch=lambda url: (200, b"ID3") if url.endswith(".mp3") else (404, b""))
    emulator.add_app(App(CLIENT, "secret"))
    portal = emulator.add_portal(DOMAIN)
    portal.add_user(User(2, "Anna", phone_inner="101"))
    portal.add_user(User(3, "Boris", phone_inner="102"))
    portal.add_user(User(4, "Gone", phone_inner="103", active=False))
    emulator.install(DOMAIN, CLIENT)
    return emulator


@pytest.fixture
def portal(em: Emulator) -> Portal:
    return em.portals[DOMAIN]


@pytest.fixture
def ctx(em: Emulator) -> Context:
    return Context(CLIENT, 1, "token")


def call(portal: Portal, ctx: Context, method: str, **params: Any) -> Any:
    return portal.call(ctx, method, params).value


def register(portal: Portal, ctx: Context, **params: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"USER_ID": 2, "PHONE_NUMBER": "+79261234567", "TYPE": 2, "LINE_NUMBER": "74951234567"}
    result = call(portal, ctx, "telephony.externalCall.register", **(base | params))
    assert isinstance(result, dict)
    return result


def core_error(excinfo: pytest.ExceptionInfo[RestError]) -> tuple[str, str, int]:
    return excinfo.value.code, excinfo.value.description, excinfo.value.status


# -- register: DOC api-reference/telephony/telephony-external-call-register.md ------------------------------------
def test_register_returns_a_call_id_in_the_documented_format(portal: Portal, ctx: Context) -> None:
    result = register(portal, ctx)
    prefix, hexpart, ts = result["CALL_ID"].split(".")
    assert prefix == "externalCall" and len(hexpart) == 32 and int(hexpart, 16) >= 0 and ts.isdigit()
    assert result["CRM_CREATED_LEAD"] is None and result["CRM_CREATED_ENTITIES"] == []
    assert "CRM_ENTITY_TYPE" not in result


def test_register_dedupes_within_30_minutes_unless_finished(portal: Portal, ctx: Context, clock: ManualClock) -> None:
    first = register(portal, ctx, EXTERNAL_CALL_ID="1710140185.18441")
    clock.advance(29 * 60)
    assert register(portal, ctx, EXTERNAL_CALL_ID="1710140185.18441")["CALL_ID"] == first["CALL_ID"]
    # CALL_START_DATE and CRM fields are not part of the key; EXTERNAL_CALL_ID, USER and TYPE are.
    assert (
        register(portal, ctx, EXTERNAL_CALL_ID="1710140185.18441", CALL_START_DATE="2026-03-07T10:20:30+03:00")[
            "CALL_ID"
        ]
        == first["CALL_ID"]
    )
    assert register(portal, ctx, EXTERNAL_CALL_ID="other")["CALL_ID"] != first["CALL_ID"]
    assert register(portal, ctx, EXTERNAL_CALL_ID="1710140185.18441", USER_ID=3)["CALL_ID"] != first["CALL_ID"]
    clock.advance(2 * 60)
    assert register(portal, ctx, EXTERNAL_CALL_ID="1710140185.18441")["CALL_ID"] != first["CALL_ID"]


def test_register_after_finish_is_a_new_call(portal: Portal, ctx: Context) -> None:
    first = register(portal, ctx)
    call(portal, ctx, "telephony.externalCall.finish", CALL_ID=first["CALL_ID"], USER_ID=2, DURATION=5)
    assert register(portal, ctx)["CALL_ID"] != first["CALL_ID"]


def test_register_by_inner_number_and_its_errors(portal: Portal, ctx: Context) -> None:
    result = register(portal, ctx, USER_ID=None, USER_PHONE_INNER="102")
    assert portal.calls[result["CALL_ID"]].user_id == 3
    cases: list[tuple[dict[str, Any], str]] = [
        ({"USER_ID": None}, "USER_ID or USER_PHONE_INNER should be set"),
        ({"USER_ID": None, "USER_PHONE_INNER": "103"}, "User is not found or is not active"),
        ({"USER_ID": 99}, "User is not found or is not active"),
        ({"TYPE": 9}, "Unknown TYPE"),
        ({"CALL_START_DATE": "yesterday"}, "CALL_START_DATE should be in the ISO-8601 format"),
        ({"PHONE_NUMBER": "anonymous"}, "Unsupported phone number format"),
    ]
    for params, message in cases:
        with pytest.raises(RestError) as excinfo:
            register(portal, ctx, **params)
        assert core_error(excinfo) == ("ERROR_CORE", message, 400), params


def test_register_finds_the_client_by_phone_and_creates_a_lead_on_request(portal: Portal, ctx: Context) -> None:
    contact = portal.add_contact({"NAME": "John", "PHONE": [{"VALUE": "8 (926) 123-45-67", "VALUE_TYPE": "WORK"}]})
    found = register(portal, ctx)
    assert (found["CRM_ENTITY_TYPE"], found["CRM_ENTITY_ID"]) == ("CONTACT", contact.id)
    created = register(portal, ctx, PHONE_NUMBER="+74950000001", CRM_CREATE=1, CRM_SOURCE="WEB")
    lead = portal.leads[created["CRM_CREATED_LEAD"]]
    assert created["CRM_CREATED_ENTITIES"] == [{"ENTITY_TYPE": "LEAD", "ENTITY_ID": lead.id}]
    assert (created["CRM_ENTITY_TYPE"], created["CRM_ENTITY_ID"]) == ("LEAD", lead.id)
    assert lead.fields["SOURCE_ID"] == "WEB" and lead.phones == ["+74950000001"]
    assert register(portal, ctx, PHONE_NUMBER="+74950000002")["CRM_CREATED_LEAD"] is None
    assert len(portal.leads) == 1


def test_outgoing_on_a_line_without_crm_auto_create_creates_nothing(portal: Portal, ctx: Context) -> None:
    # DOC register page: for outgoing calls CRM_CREATE also depends on the line's CRM_AUTO_CREATE
    call(portal, ctx, "telephony.externalLine.add", NUMBER="74951234567", CRM_AUTO_CREATE="N")
    assert register(portal, ctx, TYPE=1, CRM_CREATE=1)["CRM_CREATED_LEAD"] is None
    assert register(portal, ctx, TYPE=2, CRM_CREATE=1)["CRM_CREATED_LEAD"] is not None


# -- show / hide: DOC telephony-external-call-show.md, telephony-external-call-hide.md -----------------------------
def test_show_hide_per_user_and_false_for_unknown_calls(portal: Portal, ctx: Context) -> None:
    call_id = register(portal, ctx, SHOW=0)["CALL_ID"]
    assert portal.calls[call_id].cards == {}
    assert call(portal, ctx, "telephony.externalCall.show", CALL_ID=call_id, USER_ID=[2, 3]) is True
    assert call(portal, ctx, "telephony.externalCall.hide", CALL_ID=call_id, USER_ID=3) is True
    assert portal.calls[call_id].cards == {2: True, 3: False}
    assert [c.call_id for c in portal.open_cards(2)] == [call_id]
    assert call(portal, ctx, "telephony.externalCall.show", CALL_ID="externalCall.nope.1") is False
    assert call(portal, ctx, "telephony.externalCall.hide", CALL_ID="externalCall.nope.1") is False


# -- finish: DOC telephony-external-call-finish.md -----------------------------------------------------------------
def test_finish_returns_the_statistics_record_and_closes_cards(portal: Portal, ctx: Context) -> None:
    contact = portal.add_contact({"NAME": "John", "PHONE": [{"VALUE": "+79261234567"}]})
    call_id = register(portal, ctx, EXTERNAL_CALL_ID="ast-1")["CALL_ID"]
    call(portal, ctx, "telephony.externalCall.show", CALL_ID=call_id, USER_ID=[2, 3])
    stat = call(portal, ctx, "telephony.externalCall.finish", CALL_ID=call_id, USER_ID=3, DURATION=95, VOTE=5)
    assert stat["CALL_ID"] == call_id and stat["EXTERNAL_CALL_ID"] == "ast-1"
    assert (stat["PORTAL_USER_ID"], stat["CALL_DURATION"], stat["CALL_FAILED_CODE"], stat["CALL_STATUS"]) == (
        3,
        95,
        "200",
        1,
    )
    assert stat["CALL_START_DATE"] == {} and stat["INCOMING"] == "2" and stat["CALL_VOTE"] == 5
    assert (stat["CRM_ENTITY_TYPE"], stat["CRM_ENTITY_ID"]) == ("CONTACT", contact.id)
    activity = portal.activities[stat["CRM_ACTIVITY_ID"]].rest()
    assert activity["PROVIDER_ID"] == "VOXIMPLANT_CALL" and activity["DIRECTION"] == "1"
    assert activity["OWNER_TYPE_ID"] == "3" and activity["RESPONSIBLE_ID"] == "3"
    assert portal.open_cards(2) == [] and portal.open_cards(3) == []
    assert call(portal, ctx, "telephony.externalCall.show", CALL_ID=call_id) is False


def test_finish_defaults_to_missed_without_duration_and_moves_created_leads(portal: Portal, ctx: Context) -> None:
    created = register(portal, ctx, CRM_CREATE=1)
    stat = call(portal, ctx, "telephony.externalCall.finish", CALL_ID=created["CALL_ID"], USER_ID=3)
    assert (stat["CALL_FAILED_CODE"], stat["CALL_STATUS"]) == ("304", 0)
    assert portal.leads[created["CRM_CREATED_LEAD"]].assigned == 3
    assert portal.activities[stat["CRM_ACTIVITY_ID"]].completed is False


def test_finish_errors(portal: Portal, ctx: Context) -> None:
    call_id = register(portal, ctx)["CALL_ID"]
    with pytest.raises(RestError) as excinfo:
        call(portal, ctx, "telephony.externalCall.finish", CALL_ID=call_id)
    assert core_error(excinfo) == ("ERROR_CORE", "USER_ID or USER_PHONE_INNER should be set", 400)
    with pytest.raises(RestError) as excinfo:
        call(portal, ctx, "telephony.externalCall.finish", CALL_ID=["x"], USER_ID=2)
    assert core_error(excinfo) == ("INVALID_ARGUMENT", "CALL_ID must be a string", 400)
    call(portal, ctx, "telephony.externalCall.finish", CALL_ID=call_id, USER_ID=2, DURATION=3)
    for unknown in (call_id, "externalCall.00000000000000000000000000000000.1"):
        with pytest.raises(RestError) as excinfo:
            call(portal, ctx, "telephony.externalCall.finish", CALL_ID=unknown, USER_ID=2)
        assert core_error(excinfo) == (
            "ERROR_CORE",
            "Call is not found (call should be registered prior to finishing)",
            400,
        )


# -- attachRecord: DOC telephony-external-call-attach-record.md ----------------------------------------------------
def test_attach_record_modes_and_errors(portal: Portal, ctx: Context) -> None:
    call_id = register(portal, ctx)["CALL_ID"]
    with pytest.raises(RestError) as excinfo:
        call(portal, ctx, "telephony.externalCall.attachRecord", CALL_ID=call_id, FILENAME="a.mp3")
    assert core_error(excinfo) == (
        "",
        "Call is not found in the statistic table. It looks like it is not finished yet.",
        400,
    )
    call(portal, ctx, "telephony.externalCall.finish", CALL_ID=call_id, USER_ID=2, DURATION=3)
    content = base64.b64encode(b"RIFF....WAVE").decode()
    first = call(
        portal, ctx, "telephony.externalCall.attachRecord", CALL_ID=call_id, FILENAME="a.wav", FILE_CONTENT=content
    )
    record = portal.calls[call_id].record
    assert record is not None and record.content == b"RIFF....WAVE"
    by_url = call(portal, ctx, "telephony.externalCall.attachRecord", CALL_ID=call_id, RECORD_URL="http://pbx/r.mp3")
    record = portal.calls[call_id].record
    assert by_url["FILE_ID"] != first["FILE_ID"] and record is not None and record.name == "r.mp3"  # replaced
    upload = call(portal, ctx, "telephony.externalCall.attachRecord", CALL_ID=call_id, FILENAME="b.mp3")
    assert upload["fieldName"] == "file" and "upload.json?auth=" in upload["uploadUrl"]
    bad = [
        ({"FILENAME": "a.ogg", "FILE_CONTENT": content}, "Wrong file extension. Only wav and mp3 are allowed"),
        ({"FILENAME": "a.mp3", "FILE_CONTENT": ""}, "File content is empty."),
        (
            {"FILENAME": "a.mp3", "FILE_CONTENT": "%%%"},
            "File content is not properly encoded. Base64 encoding is expected.",
        ),
        ({"RECORD_URL": "http://pbx/missing.wav"}, "Server returns HTTP error code 404"),
    ]
    for params, message in bad:
        with pytest.raises(RestError) as excinfo:
            call(portal, ctx, "telephony.externalCall.attachRecord", CALL_ID=call_id, **params)
        assert core_error(excinfo) == ("ERROR_CORE", message, 400), params
    # these three have an empty error code in the docs
    empty_code = [
        ({}, "Required parameters are not set. Request should contain either URL or FILENAME parameter"),
        ({"RECORD_URL": "http://192.168.1.10/r.mp3"}, "Record URL resolves to a non-public address and was blocked."),
        ({"RECORD_URL": "http://127.0.0.1:8080/r.mp3"}, "Record URL resolves to a non-public address and was blocked."),
    ]
    for params, message in empty_code:
        with pytest.raises(RestError) as excinfo:
            call(portal, ctx, "telephony.externalCall.attachRecord", CALL_ID=call_id, **params)
        assert core_error(excinfo) == ("", message, 400), params


# -- externalLine: DOC telephony-external-line-*.md -----------------------------------------------------------------
def test_external_lines(portal: Portal, ctx: Context) -> None:
    assert call(portal, ctx, "telephony.externalLine.add", NUMBER="14151234567", NAME="Support Line") == {"ID": 1}
    with pytest.raises(RestError, match="Line already exists"):
        call(portal, ctx, "telephony.externalLine.add", NUMBER="14151234567")
    assert call(portal, ctx, "telephony.externalLine.update", NUMBER="14151234567", CRM_AUTO_CREATE="N") == {"ID": "1"}
    assert call(portal, ctx, "telephony.externalLine.get") == [
        {"NUMBER": "14151234567", "NAME": "Support Line", "CRM_AUTO_CREATE": "N"}
    ]
    assert call(portal, ctx, "telephony.externalLine.delete", NUMBER="14151234567") == []
    with pytest.raises(RestError, match="Could not find line with number 1"):
        call(portal, ctx, "telephony.externalLine.delete", NUMBER="1")


# -- users: DOC api-reference/user/user-get.md ---------------------------------------------------------------------
def test_user_get_by_inner_number_and_pagination(portal: Portal, ctx: Context) -> None:
    found = portal.call(ctx, "user.get", {"FILTER": {"UF_PHONE_INNER": "101", "ACTIVE": "true"}})
    assert [u["ID"] for u in found.value] == ["2"] and found.total == 1 and found.next is None
    assert call(portal, ctx, "user.get", filter={"UF_PHONE_INNER": "103", "ACTIVE": True}) == []
    for uid in range(10, 130):
        portal.add_user(User(uid, f"U{uid}", phone_inner=str(1000 + uid)))
    page1 = portal.call(ctx, "user.get", {})
    assert len(page1.value) == 50 and page1.total == 124 and page1.next == 50
    page3 = portal.call(ctx, "user.get", {"start": 100})
    assert len(page3.value) == 24 and page3.next is None
    assert call(portal, ctx, "user.current")["ID"] == "1"


# -- CRM: DOC crm/duplicates/crm-duplicate-find-by-comm.md, crm/leads/crm-lead-add.md ------------------------------
def test_duplicates_and_adds(portal: Portal, ctx: Context) -> None:
    lead_id = call(portal, ctx, "crm.lead.add", fields={"TITLE": "x", "PHONE": [{"VALUE": "+79261234567"}]})
    contact_id = call(portal, ctx, "crm.contact.add", FIELDS={"NAME": "y", "PHONE": {"0": {"VALUE": "89261234567"}}})
    assert isinstance(lead_id, int) and isinstance(contact_id, int)
    assert call(portal, ctx, "crm.duplicate.findbycomm", type="PHONE", values=["79261234567"]) == {
        "LEAD": [lead_id],
        "CONTACT": [contact_id],
    }
    assert call(portal, ctx, "crm.duplicate.findbycomm", type="PHONE", values=["1"], entity_type="LEAD") == []
    with pytest.raises(RestError) as excinfo:
        call(portal, ctx, "crm.duplicate.findbycomm", values=["1"])
    assert excinfo.value.code == "Communication type is not defined"
    with pytest.raises(RestError) as excinfo:
        call(portal, ctx, "crm.lead.add", fields="x")
    assert (excinfo.value.code, excinfo.value.description) == ("", "Parameter 'fields' must be array.")


# -- events and options: DOC events/event-bind.md, common/settings/app-option-set.md ---------------------------------
def test_event_bind_rules(portal: Portal, ctx: Context) -> None:
    assert call(portal, ctx, "event.bind", event="onExternalCallStart", handler="https://h/x") is True
    with pytest.raises(RestError) as excinfo:
        call(portal, ctx, "event.bind", event="ONEXTERNALCALLSTART", handler="https://h/x")
    assert (excinfo.value.code, excinfo.value.description) == ("ERROR_HANDLER_ALREADY_EXIST", "Handler already exists!")
    with pytest.raises(RestError) as excinfo:
        call(portal, ctx, "event.bind", event="ONNOTHING", handler="https://h/x")
    assert excinfo.value.code == "ERROR_EVENT_NOT_FOUND"
    assert call(portal, ctx, "event.get") == [
        {"event": "ONEXTERNALCALLSTART", "handler": "https://h/x", "auth_type": "0", "offline": 0}
    ]
    assert call(portal, ctx, "event.unbind", event="ONEXTERNALCALLSTART", handler="https://h/x") == {"count": 1}


def test_app_options(portal: Portal, ctx: Context) -> None:
    assert call(portal, ctx, "app.option.get") == []
    assert call(portal, ctx, "app.option.set", options={"line": "74951234567"}) is True
    assert call(portal, ctx, "app.option.get", option="line") == "74951234567"
    assert call(portal, ctx, "app.option.get", option="missing") is None
    with pytest.raises(RestError, match="options is empty"):
        call(portal, ctx, "app.option.set", options={})
    with pytest.raises(RestError, match="Administrator authorization required"):
        call(portal, Context(CLIENT, 2, "t"), "app.option.set", options={"a": "b"})


def test_unknown_method_and_missing_scope(em: Emulator, portal: Portal, ctx: Context) -> None:
    with pytest.raises(RestError) as excinfo:
        call(portal, ctx, "telephony.nothing")
    assert core_error(excinfo) == ("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    portal.installations[CLIENT].scope = ["user"]
    with pytest.raises(RestError) as excinfo:
        register(portal, ctx)
    assert excinfo.value.code == "insufficient_scope" and excinfo.value.status == 401


def test_audit_reports_what_a_customer_would_call_a_crm_bug(portal: Portal, ctx: Context) -> None:
    assert portal.audit() == {
        "unfinished": [],
        "open_cards": {},
        "duplicate_external_ids": {},
        "reregistered": {},
        "duplicate_leads": {},
        "unrecorded": [],
        "undocumented_status": {},
    }
    done = register(portal, ctx, EXTERNAL_CALL_ID="ast-1", CRM_CREATE=1)["CALL_ID"]
    assert register(portal, ctx, EXTERNAL_CALL_ID="ast-1")["CALL_ID"] == done  # a retried register
    call(portal, ctx, "telephony.externalCall.finish", CALL_ID=done, USER_ID=2, DURATION=5)
    again = register(portal, ctx, EXTERNAL_CALL_ID="ast-1", USER_ID=3, SHOW=1)["CALL_ID"]  # the same call, twice
    call(portal, ctx, "crm.lead.add", fields={"TITLE": "dup", "PHONE": [{"VALUE": "89261234567"}]})
    audit = portal.audit()
    assert audit["unfinished"] == [again] and audit["open_cards"] == {3: [again]}
    assert audit["duplicate_external_ids"] == {"ast-1": [done, again]}
    assert audit["reregistered"] == {done: 2} and audit["unrecorded"] == [done]
    assert list(audit["duplicate_leads"].values()) == [[1, 2]]
    odd = register(portal, ctx, EXTERNAL_CALL_ID="ast-2")["CALL_ID"]
    call(portal, ctx, "telephony.externalCall.finish", CALL_ID=odd, USER_ID=2, STATUS_CODE="505")  # asterlink's sic
    assert portal.audit()["undocumented_status"] == {odd: "505"}


def test_finish_with_an_unreachable_record_url_still_finishes(portal: Portal, ctx: Context) -> None:
    # DOC telephony-external-call-finish.md: RECORD_URL (deprecated); ERRORS "may appear"
    call_id = register(portal, ctx)["CALL_ID"]
    stat = call(
        portal,
        ctx,
        "telephony.externalCall.finish",
        CALL_ID=call_id,
        USER_ID=2,
        DURATION=4,
        RECORD_URL="http://pbx/x.wav",
    )
    assert stat["ERRORS"] == ["Server returns HTTP error code 404"] and portal.calls[call_id].finished
    other = register(portal, ctx, EXTERNAL_CALL_ID="2")["CALL_ID"]
    stat = call(portal, ctx, "telephony.externalCall.finish", CALL_ID=other, USER_ID=2, RECORD_URL="http://pbx/ok.mp3")
    record = portal.calls[other].record
    assert "ERRORS" not in stat and record is not None and record.name == "ok.mp3"


def test_companies_bind_calls_after_contacts(portal: Portal, ctx: Context) -> None:
    # DOC telephony-external-call-register.md: CRM_ENTITY_TYPE CONTACT | COMPANY | LEAD
    company = portal.add_company({"TITLE": "Acme LLC", "PHONE": [{"VALUE": "+74951110000"}]})
    found = register(portal, ctx, PHONE_NUMBER="84951110000")
    assert (found["CRM_ENTITY_TYPE"], found["CRM_ENTITY_ID"]) == ("COMPANY", company.id)
    stat = call(portal, ctx, "telephony.externalCall.finish", CALL_ID=found["CALL_ID"], USER_ID=2, DURATION=1)
    assert portal.activities[stat["CRM_ACTIVITY_ID"]].rest()["OWNER_TYPE_ID"] == "4"
    contact = portal.add_contact({"NAME": "Jane", "PHONE": [{"VALUE": "+74951110000"}]})
    assert register(portal, ctx, PHONE_NUMBER="84951110000")["CRM_ENTITY_ID"] == contact.id
    forced = register(portal, ctx, PHONE_NUMBER="1", CRM_ENTITY_TYPE="COMPANY", CRM_ENTITY_ID=company.id)
    assert (forced["CRM_ENTITY_TYPE"], forced["CRM_ENTITY_ID"]) == ("COMPANY", company.id)
    assert call(portal, ctx, "crm.duplicate.findbycomm", type="PHONE", values=["74951110000"]) == {
        "CONTACT": [contact.id],
        "COMPANY": [company.id],
    }


def test_statistic_get_lists_finished_calls_for_reconciliation(portal: Portal, ctx: Context) -> None:
    # DOC telephony/voximplant/voximplant-statistic-get.md (string values, FILTER operators, pages of 50)
    ids = []
    for n in range(55):
        call_id = register(portal, ctx, EXTERNAL_CALL_ID=f"ast-{n}", CALL_START_DATE=f"2026-03-10T11:{n:02d}:00+03:00")[
            "CALL_ID"
        ]
        call(portal, ctx, "telephony.externalCall.finish", CALL_ID=call_id, USER_ID=2 + n % 2, DURATION=n)
        ids.append(call_id)
    register(portal, ctx, EXTERNAL_CALL_ID="still-ringing")
    page = portal.call(ctx, "voximplant.statistic.get", {"SORT": "ID", "ORDER": "ASC"})
    assert page.total == 55 and page.next == 50 and len(page.value) == 50
    first = page.value[0]
    assert (first["CALL_ID"], first["EXTERNAL_CALL_ID"], first["CALL_DURATION"], first["CALL_FAILED_CODE"]) == (
        ids[0],
        "ast-0",
        "0",
        "304",
    )
    assert first["CALL_START_DATE"] == "2026-03-10T08:00:00+00:00" and first["CALL_TYPE"] == "2"
    one = call(portal, ctx, "voximplant.statistic.get", FILTER={"EXTERNAL_CALL_ID": "ast-7"})
    assert [r["CALL_ID"] for r in one] == [ids[7]] and one[0]["PORTAL_USER_ID"] == "3"
    late = portal.call(ctx, "voximplant.statistic.get", {"FILTER": {">=CALL_START_DATE": "2026-03-10T11:50:00+03:00"}})
    assert late.total == 5
    answered_by_anna = portal.call(
        ctx, "voximplant.statistic.get", {"FILTER": {"PORTAL_USER_ID": 2, ">CALL_DURATION": 0}}
    )
    assert answered_by_anna.total == 27


# -- Tasks: DOC api-reference/tasks/tasks-task-add.md ----------------------------------------------------------------
def test_task_add_needs_a_title_and_an_active_responsible(portal: Portal, ctx: Context) -> None:
    result = call(
        portal, ctx, "tasks.task.add", fields={"TITLE": "Call back", "RESPONSIBLE_ID": 2, "UF_CRM_TASK": ["L_4"]}
    )
    task_id = int(result["task"]["id"])
    assert portal.tasks[task_id]["UF_CRM_TASK"] == ["L_4"] and result["task"]["responsibleId"] == "2"
    with pytest.raises(RestError):
        call(portal, ctx, "tasks.task.add", fields={"TITLE": "", "RESPONSIBLE_ID": 2})
    with pytest.raises(RestError):
        call(portal, ctx, "tasks.task.add", fields={"TITLE": "x", "RESPONSIBLE_ID": 999})
