"""Events the emulator pushes to a local handler as form posts, and the install flow (protocols.md §A2, §A6)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.bitrix24 import App, Emulator, EmulatorServer, User
from sandbox.bitrix24.testing import EventReceiver, post_json

pytestmark = pytest.mark.integration

DOMAIN = "acme.bitrix24.com"
CLIENT = "local.pbxlink.1"


@pytest.fixture
def app() -> Iterator[EventReceiver]:
    with EventReceiver() as receiver:
        yield receiver


@pytest.fixture
def server(app: EventReceiver) -> Iterator[EmulatorServer]:
    emulator = Emulator()
    with EmulatorServer(emulator) as srv:
        emulator.add_app(App(CLIENT, "s", handler_url=f"{app.url}/b24/install"))
        portal = emulator.add_portal(DOMAIN)
        portal.add_user(User(2, "Anna", phone_inner="101"))
        yield srv


def attempts(server: EmulatorServer, timeout: float = 2.0) -> list[list[str]]:
    """Delivery results per event, once the deliverer has recorded them (it records after the answer)."""
    deadline = time.monotonic() + timeout
    events = server.emulator.portals[DOMAIN].events
    while time.monotonic() < deadline and not all(e.attempts for e in events):
        time.sleep(0.01)
    return [list(e.attempts) for e in events]


def control(server: EmulatorServer, path: str, payload: dict[str, Any]) -> Any:
    answer = post_json(f"{server.url}/_emulator/{path}", payload)
    assert answer.status == 200, answer.body
    return answer.json()


def rest(tokens: dict[str, Any], method: str, **payload: Any) -> Any:
    answer = post_json(tokens["client_endpoint"] + method, {**payload, "auth": tokens["access_token"]})
    assert answer.status == 200, answer.body
    return answer.json()["result"]


# DOC api-reference/common/events/on-app-install.md, settings/app-installation/installation-callback.md
def test_install_posts_onappinstall_as_a_form(server: EmulatorServer, app: EventReceiver) -> None:
    installed = control(server, f"portals/{DOMAIN}/install", {"client_id": CLIENT})
    [post] = app.wait(1)
    assert post.path == "/b24/install" and post.content_type == "application/x-www-form-urlencoded"
    assert b"auth%5Bapplication_token%5D=" in post.raw  # PHP http_build_query style
    form = post.form
    assert form["event"] == "ONAPPINSTALL" and form["data"]["INSTALLED"] == "Y"
    auth = form["auth"]
    assert auth["access_token"] == installed["access_token"] and auth["refresh_token"] == installed["refresh_token"]
    assert auth["application_token"] == installed["application_token"]
    assert auth["member_id"] == installed["member_id"] and auth["domain"] == DOMAIN
    assert auth["client_endpoint"] == f"{server.url}/{DOMAIN}/rest/"
    # the tokens from the event work
    assert rest({"client_endpoint": auth["client_endpoint"], "access_token": auth["access_token"]}, "app.info")[
        "INSTALLED"
    ]


# DOC telephony/events/on-external-call-start.md; a click on a number in the portal
def test_click_to_call_sends_onexternalcallstart_with_a_registered_call(
    server: EmulatorServer, app: EventReceiver
) -> None:
    tokens = control(server, f"portals/{DOMAIN}/install", {"client_id": CLIENT})
    rest(tokens, "telephony.externalLine.add", NUMBER="74951234567")
    rest(tokens, "event.bind", event="ONEXTERNALCALLSTART", handler=f"{app.url}/b24/c2c")
    rest(tokens, "event.bind", event="ONEXTERNALCALLBACKSTART", handler=f"{app.url}/b24/callback")
    clicked = control(server, f"portals/{DOMAIN}/click", {"user_id": 2, "phone": "+79261234567"})
    posts = app.wait(2)
    event = posts[1].form
    assert posts[1].path == "/b24/c2c" and event["event"] == "ONEXTERNALCALLSTART"
    data = event["data"]
    assert data["CALL_ID"] == clicked["CALL_ID"] and data["USER_ID"] == "2"
    assert (data["PHONE_NUMBER"], data["LINE_NUMBER"]) == ("+79261234567", "74951234567")
    assert event["auth"]["application_token"] == tokens["application_token"] and event["auth"]["access_token"]
    # the call is registered: the app finishes that CALL_ID and never registers it again
    stat = rest(tokens, "telephony.externalCall.finish", CALL_ID=data["CALL_ID"], USER_ID=2, DURATION=7)
    assert stat["INCOMING"] == "1" and stat["CALL_DURATION"] == 7
    control(server, f"portals/{DOMAIN}/callback", {"phone": "+79031112233"})
    callback = app.wait(3)[2].form
    assert callback["event"] == "ONEXTERNALCALLBACKSTART" and "CALL_ID" not in callback["data"]


def test_duplicate_delivery_and_uninstall(server: EmulatorServer, app: EventReceiver) -> None:
    tokens = control(server, f"portals/{DOMAIN}/install", {"client_id": CLIENT})
    rest(tokens, "event.bind", event="ONEXTERNALCALLSTART", handler=f"{app.url}/c2c")
    rest(tokens, "event.bind", event="ONAPPUNINSTALL", handler=f"{app.url}/gone")
    control(server, "faults", {"duplicate_events": True})
    control(server, f"portals/{DOMAIN}/click", {"user_id": 2, "phone": "+1555"})
    posts = app.wait(3)
    assert [p.path for p in posts] == ["/b24/install", "/c2c", "/c2c"]
    assert posts[1].form["data"]["CALL_ID"] == posts[2].form["data"]["CALL_ID"]
    control(server, "faults", {"duplicate_events": False})
    control(server, f"portals/{DOMAIN}/uninstall", {"client_id": CLIENT})
    gone = app.wait(4)[3].form
    assert gone["event"] == "ONAPPUNINSTALL" and "access_token" not in gone["auth"]
    assert gone["auth"]["application_token"] == tokens["application_token"]
    assert attempts(server) == [["200"], ["200", "200"], ["200"]]


def test_a_failed_delivery_is_not_retried(server: EmulatorServer) -> None:
    # DOC api-reference/events/index.md: no retries
    with EventReceiver(status=500) as broken:
        server.emulator.apps[CLIENT].handler_url = f"{broken.url}/install"
        control(server, f"portals/{DOMAIN}/install", {"client_id": CLIENT})
        assert len(broken.wait(1)) == 1
        assert attempts(server) == [["500"]]


def test_lost_and_delayed_events(server: EmulatorServer, app: EventReceiver) -> None:
    tokens = control(server, f"portals/{DOMAIN}/install", {"client_id": CLIENT})
    rest(tokens, "event.bind", event="ONEXTERNALCALLSTART", handler=f"{app.url}/c2c")
    app.wait(1)
    control(server, "faults", {"event_loss_rate": 1.0})
    lost = control(server, f"portals/{DOMAIN}/click", {"user_id": 2, "phone": "+1555"})["CALL_ID"]
    control(server, "faults", {"event_loss_rate": 0, "event_delay": 0.3})
    started = time.monotonic()
    kept = control(server, f"portals/{DOMAIN}/click", {"user_id": 2, "phone": "+1666"})["CALL_ID"]
    posts = app.wait(2)
    assert time.monotonic() - started >= 0.3
    assert [p.form["data"]["CALL_ID"] for p in posts[1:]] == [kept]
    assert attempts(server)[1] == ["dropped"]
    # the lost click is still a registered call the app never heard of: the audit shows it
    assert lost in server.emulator.portals[DOMAIN].audit()["unfinished"]
