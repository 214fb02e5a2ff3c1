"""OAuth, envelopes, limits, batch, install and click-to-call, with an injected clock and no sockets."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sandbox.bitrix24 import App, Emulator, ManualClock, User

DOMAIN = "acme.bitrix24.com"
CLIENT = "local.app.1"
SECRET = "secret"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def em(clock: ManualClock) -> Emulator:
    emulator = Emulator(clock, seed=1)
    emulator.add_app(App(CLIENT, SECRET, handler_url="https://app.example/install"))
    portal = emulator.add_portal(DOMAIN)
    portal.add_user(User(2, "Anna", phone_inner="101"))
    return emulator


@pytest.fixture
def tokens(em: Emulator) -> dict[str, Any]:
    return em.install(DOMAIN, CLIENT)[1]


def refresh(em: Emulator, token: str, client_id: str = CLIENT, secret: str = SECRET) -> tuple[int, dict[str, Any]]:
    return em.oauth_token(
        {"grant_type": "refresh_token", "client_id": client_id, "client_secret": secret, "refresh_token": token}
    )


# DOC settings/oauth/index.md, settings/oauth/auto-renewal.md (protocols.md §A3)
def test_refresh_rotates_and_a_reused_refresh_token_is_invalid_grant(em: Emulator, tokens: dict[str, Any]) -> None:
    status, fresh = refresh(em, tokens["refresh_token"])
    assert status == 200 and fresh["refresh_token"] != tokens["refresh_token"]
    assert fresh["expires_in"] == 3600 and fresh["client_endpoint"] == f"https://{DOMAIN}/rest/"
    assert fresh["domain"] == "oauth.bitrix.info" and fresh["member_id"] == em.portals[DOMAIN].member_id
    assert refresh(em, tokens["refresh_token"]) == (400, {"error": "invalid_grant"})
    assert refresh(em, fresh["refresh_token"])[0] == 200


def test_oauth_client_errors(em: Emulator, tokens: dict[str, Any]) -> None:
    assert refresh(em, tokens["refresh_token"], client_id="other") == (200, {"error": "wrong_client"})
    assert refresh(em, tokens["refresh_token"], secret="bad") == (400, {"error": "invalid_client"})
    assert refresh(em, "")[1]["error"] == "invalid_request"


# DOC _includes/system-errors.md
def test_tokens_expire_after_the_ttl(em: Emulator, tokens: dict[str, Any], clock: ManualClock) -> None:
    auth = {"auth": tokens["access_token"]}
    assert em.rest(None, "user.current", auth)[0] == 200
    clock.advance(3600)
    assert em.rest(None, "user.current", auth) == (
        401,
        {"error": "expired_token", "error_description": "The access token provided has expired."},
    )
    assert em.rest(None, "user.current", {"auth": "nonsense"}) == (
        401,
        {"error": "invalid_token", "error_description": "Unable to get application by token"},
    )
    assert em.rest(None, "user.current", {}) == (
        401,
        {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"},
    )


def test_success_envelope_has_time(em: Emulator, tokens: dict[str, Any]) -> None:
    # DOC api-reference/data-types.md#time
    status, body = em.rest(DOMAIN, "USER.CURRENT", {"auth": tokens["access_token"]})
    assert status == 200 and body["result"]["ID"] == "1"
    assert {"start", "finish", "duration", "processing", "date_start", "date_finish", "operating"} <= set(body["time"])


def test_a_token_of_one_portal_is_invalid_on_another(em: Emulator, tokens: dict[str, Any]) -> None:
    em.add_portal("other.bitrix24.com")
    assert (
        em.rest("other.bitrix24.com", "user.current", {"auth": tokens["access_token"]})[1]["error"] == "invalid_token"
    )


# DOC limits.md: leaky bucket X=50, Y=2/s
def test_leaky_bucket(em: Emulator, tokens: dict[str, Any], clock: ManualClock) -> None:
    auth = {"auth": tokens["access_token"]}
    assert all(em.rest(None, "user.current", auth)[0] == 200 for _ in range(50))
    assert em.rest(None, "user.current", auth) == (
        503,
        {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
    )
    clock.advance(0.5)  # drains one request
    assert em.rest(None, "user.current", auth)[0] == 200
    assert em.rest(None, "user.current", auth)[0] == 503


# DOC settings/how-to-call-rest-api/batch.md
def test_batch_substitution_errors_and_halt(em: Emulator, tokens: dict[str, Any]) -> None:
    auth = tokens["access_token"]
    cmd = {
        "reg": "telephony.externalCall.register?USER_ID=2&PHONE_NUMBER=%2B79261234567&TYPE=2",
        "show": "telephony.externalCall.show?CALL_ID=$result[reg][CALL_ID]&USER_ID[]=2",
        "users": "user.get?FILTER[UF_PHONE_INNER]=101",
        "who": "user.get?ID=$result[users][0][ID]",
        "bad": "telephony.externalCall.finish?CALL_ID=nope&USER_ID=2",
    }
    status, body = em.rest(None, "batch", {"auth": auth, "halt": 0, "cmd": cmd})
    assert status == 200
    result = body["result"]
    assert result["result"]["show"] is True and result["result"]["who"][0]["ID"] == "2"
    assert result["result_total"] == {"users": 1, "who": 1} and result["result_next"] == []
    assert result["result_error"]["bad"]["error"] == "ERROR_CORE"
    halted = em.rest(None, "batch", {"auth": auth, "halt": 1, "cmd": {"bad": cmd["bad"], "users": cmd["users"]}})[1]
    assert halted["result"]["result"] == [] and list(halted["result"]["result_error"]) == ["bad"]
    nested = em.rest(None, "batch", {"auth": auth, "cmd": ["batch?cmd[0]=user.current"]})[1]["result"]
    assert nested["result_error"] == [
        {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED", "error_description": "Method is not allowed for batch usage"}
    ]
    too_long = em.rest(None, "batch", {"auth": auth, "cmd": ["user.current"] * 51})
    assert too_long == (400, {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"})


# protocols.md §A2.2, DOC api-reference/common/events/on-app-install.md
def test_install_posts_onappinstall_with_tokens(em: Emulator, tokens: dict[str, Any]) -> None:
    [event] = em.portals[DOMAIN].take_outbox()
    assert event.url == "https://app.example/install" and event.event == "ONAPPINSTALL"
    auth = event.payload["auth"]
    assert auth["access_token"] == tokens["access_token"] and auth["refresh_token"] == tokens["refresh_token"]
    assert auth["application_token"] == em.portals[DOMAIN].installations[CLIENT].application_token
    assert auth["member_id"] == em.portals[DOMAIN].member_id and event.payload["data"]["INSTALLED"] == "Y"


def test_uninstall_event_has_no_tokens_and_tokens_die(em: Emulator, tokens: dict[str, Any]) -> None:
    em.rest(None, "event.bind", {"auth": tokens["access_token"], "event": "ONAPPUNINSTALL", "handler": "https://h/u"})
    em.portals[DOMAIN].take_outbox()
    em.uninstall(DOMAIN, CLIENT)
    [event] = em.portals[DOMAIN].take_outbox()
    assert event.event == "ONAPPUNINSTALL" and "access_token" not in event.payload["auth"]
    assert "application_token" in event.payload["auth"]
    assert em.rest(None, "user.current", {"auth": tokens["access_token"]})[0] == 401
    assert refresh(em, tokens["refresh_token"]) == (400, {"error": "invalid_grant"})


# DOC telephony/events/on-external-call-start.md
def test_click_to_call_registers_and_sends_the_call_id(em: Emulator, tokens: dict[str, Any]) -> None:
    auth = tokens["access_token"]
    assert em.click_to_call(DOMAIN, 2, "+79261234567") is None  # no handler bound: nothing happens
    em.rest(None, "telephony.externalLine.add", {"auth": auth, "NUMBER": "74951234567"})
    em.rest(None, "event.bind", {"auth": auth, "event": "ONEXTERNALCALLSTART", "handler": "https://h/c2c"})
    em.portals[DOMAIN].take_outbox()
    call_id = em.click_to_call(DOMAIN, 2, "+79261234567")
    [event] = em.portals[DOMAIN].take_outbox()
    data = event.payload["data"]
    assert data["CALL_ID"] == call_id and data["USER_ID"] == "2" and data["LINE_NUMBER"] == "74951234567"
    assert data["PHONE_NUMBER_INTERNATIONAL"] == "+79261234567"
    assert event.payload["event_handler_id"] and event.payload["auth"]["access_token"]
    call = em.portals[DOMAIN].calls[call_id or ""]
    assert call.type == 1 and call.external_call_id is None and call.click_to_call
    status, stat = em.rest(None, "telephony.externalCall.finish", {"auth": auth, "CALL_ID": call_id, "USER_ID": 2})
    assert status == 200 and stat["result"]["INCOMING"] == "1"


def test_events_wait_for_install_finish_for_apps_with_ui(em: Emulator) -> None:
    # DOC settings/app-installation/installation-finish.md
    em.add_app(App("local.ui", "s", handler_url="https://app.example/index.php", has_ui=True, app_id=2))
    _, tokens = em.install(DOMAIN, "local.ui")
    [page] = em.portals[DOMAIN].take_outbox()
    assert page.url.startswith("https://app.example/index.php?DOMAIN=acme.bitrix24.com&PROTOCOL=1")
    assert page.payload["AUTH_ID"] == tokens["access_token"] and page.payload["PLACEMENT"] == "DEFAULT"
    auth = tokens["access_token"]
    assert em.rest(None, "app.info", {"auth": auth})[1]["result"]["INSTALLED"] is False
    em.rest(None, "event.bind", {"auth": auth, "event": "ONEXTERNALCALLSTART", "handler": "https://h/c"})
    assert em.click_to_call(DOMAIN, 2, "+1") is None
    em.install_finish(DOMAIN, "local.ui")
    assert em.click_to_call(DOMAIN, 2, "+1") is not None


def test_fault_knobs(em: Emulator, tokens: dict[str, Any]) -> None:
    auth = {"auth": tokens["access_token"]}
    em.faults.rate_limit = False
    em.faults.server_error_rate = 1.0
    assert em.rest(None, "user.current", auth)[1]["error"] == "INTERNAL_SERVER_ERROR"
    em.faults.server_error_rate = 0.0
    em.faults.query_limit_rate = 1.0
    assert em.rest(None, "user.current", auth)[0] == 503
    em.faults.query_limit_rate = 0.0
    em.faults.expire_every = 3
    statuses = [em.rest(None, "user.current", auth)[0] for _ in range(3)]
    assert statuses == [200, 200, 401]
    new = refresh(em, tokens["refresh_token"])[1]
    em.faults.expire_every = 0
    assert em.rest(None, "user.current", {"auth": new["access_token"]})[0] == 200
    assert em.expire_all_tokens() >= 2
    assert em.rest(None, "user.current", {"auth": new["access_token"]})[1]["error"] == "expired_token"


def test_two_concurrent_refreshes_of_one_token_have_one_winner(em: Emulator, tokens: dict[str, Any]) -> None:
    # issue 4: "safe when two Lambdas refresh at once (refresh tokens rotate and a reused one is dead)"
    barrier = threading.Barrier(8)
    answers: list[tuple[int, dict[str, Any]]] = []

    def worker() -> None:
        barrier.wait()
        answers.append(refresh(em, tokens["refresh_token"]))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [body for status, body in answers if status == 200]
    assert len(winners) == 1 and "access_token" in winners[0]
    assert sorted(status for status, _ in answers) == [200] + [400] * 7


def test_a_binding_with_auth_type_gets_that_users_token(em: Emulator, tokens: dict[str, Any]) -> None:
    # DOC events/event-bind.md: auth_type = the user whose authorization the handler gets
    auth = tokens["access_token"]
    em.rest(
        None, "event.bind", {"auth": auth, "event": "ONEXTERNALCALLSTART", "handler": "https://h/a", "auth_type": 1}
    )
    em.rest(None, "event.bind", {"auth": auth, "event": "ONEXTERNALCALLSTART", "handler": "https://h/b"})
    em.portals[DOMAIN].take_outbox()
    em.click_to_call(DOMAIN, 2, "+79261234567")
    by_url = {ev.url: ev.payload["auth"]["access_token"] for ev in em.portals[DOMAIN].take_outbox()}
    assert em.access[by_url["https://h/a"]].user_id == 1 and em.access[by_url["https://h/b"]].user_id == 2


def test_a_number_as_written_in_the_crm_is_sent_with_its_international_form(
    em: Emulator, tokens: dict[str, Any]
) -> None:
    # DOC telephony/events/on-external-call-start.md: PHONE_NUMBER and PHONE_NUMBER_INTERNATIONAL
    em.rest(
        None, "event.bind", {"auth": tokens["access_token"], "event": "ONEXTERNALCALLSTART", "handler": "https://h"}
    )
    em.portals[DOMAIN].take_outbox()
    em.click_to_call(DOMAIN, 2, "8 (926) 123-45-67")
    [event] = em.portals[DOMAIN].take_outbox()
    data = event.payload["data"]
    assert (data["PHONE_NUMBER"], data["PHONE_NUMBER_INTERNATIONAL"]) == ("8 (926) 123-45-67", "+79261234567")


def test_statistics_show_the_portal_time_zone(em: Emulator, tokens: dict[str, Any]) -> None:
    from datetime import timedelta, timezone

    em.add_portal("msk.bitrix24.ru", tz=timezone(timedelta(hours=3)))
    em.add_app(App("local.msk", "s"))
    auth = em.install("msk.bitrix24.ru", "local.msk")[1]["access_token"]
    reg = em.rest(
        None, "telephony.externalCall.register", {"auth": auth, "USER_ID": 1, "PHONE_NUMBER": "+1", "TYPE": 2}
    )
    call_id = reg[1]["result"]["CALL_ID"]
    em.rest(None, "telephony.externalCall.finish", {"auth": auth, "CALL_ID": call_id, "USER_ID": 1})
    [row] = em.rest(None, "voximplant.statistic.get", {"auth": auth})[1]["result"]
    assert row["CALL_START_DATE"].endswith("+03:00")
