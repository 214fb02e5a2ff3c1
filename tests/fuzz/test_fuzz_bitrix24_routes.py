"""Hostile posts to ``/b24/events`` and ``/b24/install`` (docs/reliability.md, "Hostile input").

Bodies are what Bitrix24 posts (PHP-style forms: ``auth[member_id]=...&data[CALL_ID]=...``), mutated: keys and
values replaced, brackets broken or nested too deep, fields dropped or repeated, percent-escapes and bytes that
are not UTF-8, JSON of any shape under either content type. DynamoDB is moto; Bitrix24's OAuth server and REST
are a scripted ``httpx.MockTransport`` that confirms exactly one refresh token for exactly one portal.

Properties: the answer is 200/400/403 (events) or 200/400/403/502 (install) with a body that parses, never a 500;
an event reaches its handler only with the installed portal's member_id and application token; an install
changes the stored application token only when the OAuth server confirmed it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import boto3  # type: ignore[import-untyped]
import httpx
import pytest
from fuzz_profile import fake_aws_credentials, fuzz
from hypothesis import event, given
from hypothesis import strategies as st
from moto import mock_aws

from cloud.bitrix24 import events, install
from cloud.bitrix24.events import B24Event
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.storage.tables import create_tables
from cloud.tenants import store
from cloud.tenants.store import Tenant

REGION = "us-east-1"
MEMBER = "a223c6b3710f85df22e9377d6c4f7553"
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"
GOOD_REFRESH = "ref-genuine"
FORM = "application/x-www-form-urlencoded"


def _oauth_and_rest(request: httpx.Request) -> httpx.Response:
    """Bitrix24's OAuth server (one genuine refresh token, for ``MEMBER``) and the portal's REST."""
    if request.url.path == "/oauth/token/":
        form = dict(httpx.QueryParams(request.content.decode()))
        if form.get("refresh_token") != GOOD_REFRESH:
            return httpx.Response(400, json={"error": "invalid_grant", "error_description": "Invalid refresh token"})
        return httpx.Response(
            200,
            json={
                "access_token": "acc",
                "refresh_token": GOOD_REFRESH,  # the double accepts it again: reinstalls stay possible
                "expires_in": 3600,
                "member_id": MEMBER,
                "client_endpoint": "https://acme.bitrix24.com/rest/",
                "server_endpoint": "https://oauth.bitrix.info/rest/",
                "scope": "crm,telephony,user",
            },
        )
    if request.url.path == "/rest/event.get":
        return httpx.Response(200, json={"result": []})
    if request.url.path == "/rest/batch":
        cmd = json.loads(request.content)["cmd"]
        return httpx.Response(200, json={"result": {"result": dict.fromkeys(cmd, True), "result_error": []}})
    return httpx.Response(404, json={"error": "ERROR_METHOD_NOT_FOUND"})


class World:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.handled: list[B24Event] = []

    def handler(self, rt: Runtime, tenant: Tenant, event: B24Event) -> None:
        self.handled.append(event)

    def reinstall(self) -> None:
        """The genuine install, as the portal would post it (after an example uninstalled or reinstalled it)."""
        answer = install.handle_install(self.rt, {}, _form(_onappinstall()).encode(), FORM)
        assert answer.status == 200, answer

    def stored_token_is(self, token: str) -> bool:
        return store.verify_application_token(store.get_tenant(self.rt, MEMBER), token)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with fake_aws_credentials(REGION), mock_aws():
        create_tables(boto3.client("dynamodb", region_name=REGION), "fuzzb24-")
        settings = Settings(
            table_prefix="fuzzb24-",
            region=REGION,
            b24_client_id="app.1",
            b24_client_secret="s3cret",
            b24_oauth_url="https://oauth.bitrix.info/oauth/token/",
            public_base_url="https://pbx.example/api",
        )
        rt = Runtime(settings, http_client_factory=lambda: httpx.Client(transport=httpx.MockTransport(_oauth_and_rest)))
        w = World(rt)
        try:
            with events.event_handler("ONEXTERNALCALLSTART", w.handler):
                w.reinstall()
                yield w
        finally:
            rt.close()


# -- bodies -----------------------------------------------------------------------------------------------------


def _event(member: str = MEMBER, token: str = APP_TOKEN, name: str = "ONEXTERNALCALLSTART") -> list[tuple[str, str]]:
    return [
        ("event", name),
        ("event_handler_id", "1055"),
        ("data[CALL_ID]", "externalCall.89350264e026dace3f2b14d1f438257c.1773236989"),
        ("data[USER_ID]", "2"),
        ("data[PHONE_NUMBER]", "+494951234567"),
        ("ts", "1773236988"),
        ("auth[access_token]", "user-token"),
        ("auth[domain]", "acme.bitrix24.com"),
        ("auth[member_id]", member),
        ("auth[application_token]", token),
    ]


def _onappinstall(refresh: str = GOOD_REFRESH, token: str = APP_TOKEN) -> list[tuple[str, str]]:
    return [
        ("event", "ONAPPINSTALL"),
        ("data[VERSION]", "1"),
        ("data[LANGUAGE_ID]", "de"),
        ("ts", "1696527000"),
        ("auth[access_token]", "acc-install"),
        ("auth[refresh_token]", refresh),
        ("auth[expires_in]", "3600"),
        ("auth[scope]", "crm telephony user"),
        ("auth[domain]", "acme.bitrix24.com"),
        ("auth[member_id]", MEMBER),
        ("auth[application_token]", token),
    ]


def _page_install(refresh: str = GOOD_REFRESH, token: str = APP_TOKEN) -> list[tuple[str, str]]:
    return [
        ("AUTH_ID", "acc"),
        ("AUTH_EXPIRES", "3600"),
        ("REFRESH_ID", refresh),
        ("SERVER_ENDPOINT", "https://oauth.bitrix.info/rest/"),
        ("APPLICATION_TOKEN", token),
        ("APPLICATION_SCOPE", "crm,telephony,user"),
        ("member_id", MEMBER),
        ("status", "L"),
        ("PLACEMENT", "DEFAULT"),
    ]


def _form(pairs: list[tuple[str, str]], raw_keys: bool = False) -> str:
    if raw_keys:  # brackets unescaped, as PHP clients often send them
        return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs)
    return urlencode(pairs)


_KEY_JUNK = st.sampled_from(
    [
        "auth[member_id]",
        "auth[application_token]",
        "auth",
        "auth[]",
        "auth[member_id][]",
        "auth[member_id][0]",
        "data",
        "data[",
        "data]",
        "[x]",
        "event",
        "event[]",
        "a" + "[b]" * 9,
        "",
        "auth[domain]",
        "auth[refresh_token]",
        "REFRESH_ID",
        "member_id",
        "APPLICATION_TOKEN",
    ]
)
_VALUE_JUNK = st.sampled_from(
    [
        "",
        MEMBER,
        APP_TOKEN,
        GOOD_REFRESH,
        "ONAPPINSTALL",
        "ONAPPUNINSTALL",
        "onexternalcallstart",
        "ONEXTERNALCALLSTART",
        "other-portal",
        "../../etc",
        "a" * 3000,
        "x" * 65,
        "\u0000",
        "é",
        MEMBER.upper(),
        APP_TOKEN + " ",
    ]
)


@st.composite
def posted(draw: st.DrawFn, base: list[list[tuple[str, str]]]) -> tuple[bytes, str]:
    """A real post, mutated; encoded as Bitrix24 would, or broken at the byte level; sometimes JSON instead."""
    pairs = list(draw(st.sampled_from(base)))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["value", "key", "drop", "repeat", "add"]))
        i = draw(st.integers(0, max(len(pairs) - 1, 0)))
        if not pairs:
            action = "add"
        if action == "value":
            pairs[i] = (pairs[i][0], draw(_VALUE_JUNK | st.text(max_size=40)))
        elif action == "key":
            pairs[i] = (draw(_KEY_JUNK | st.text(max_size=20)), pairs[i][1])
        elif action == "drop":
            del pairs[i]
        elif action == "repeat":
            pairs.insert(draw(st.integers(0, len(pairs))), pairs[i])
        else:
            pairs.append((draw(_KEY_JUNK), draw(_VALUE_JUNK)))
    shape = draw(st.sampled_from(["form", "form", "form", "raw", "raw", "bytes", "json", "json-any", "many"]))
    if shape == "json":
        data: dict[str, Any] = {}
        for key, value in pairs:
            data[key] = value
        return json.dumps(data).encode(), draw(st.sampled_from(["application/json", "application/json; charset=utf-8"]))
    if shape == "json-any":
        anything = draw(
            st.recursive(st.none() | st.integers() | st.text(max_size=10), lambda c: st.lists(c, max_size=3))
        )
        return json.dumps(anything).encode(), "application/json"
    if shape == "many":
        return (_form(pairs) + "&x=1" * 1001).encode(), FORM
    body = _form(pairs, raw_keys=shape == "raw").encode()
    if shape == "bytes":
        cut = draw(st.integers(0, len(body)))
        body = (
            body[:cut] + draw(st.sampled_from([b"%zz", b"%ff%fe", b"\xff", b"&&&", b"=", b"%5B", b"\x00"])) + body[cut:]
        )
    return body, draw(st.sampled_from([FORM, FORM + "; charset=utf-8", "", "text/plain"]))


def _genuine_event(body: bytes, content_type: str) -> bool:
    """Would a verifier that reads the body as Bitrix24 meant it accept this event?"""
    from cloud.bitrix24.forms import FormError, parse_body

    try:
        form = parse_body(body, content_type)
    except FormError:
        return False
    auth = form.get("auth")
    return (
        isinstance(auth, dict)
        and auth.get("member_id") == MEMBER
        and auth.get("application_token") == APP_TOKEN
        and str(form.get("event", "")).upper() == "ONEXTERNALCALLSTART"
    )


# -- properties -------------------------------------------------------------------------------------------------


@fuzz(150)
@given(posted([_event(), _event(token="forged-token"), _event(member="b" * 32), _event(name="ONAPPUNINSTALL")]))
def test_events_are_verified_and_bad_input_never_is_a_500(world: World, post: tuple[bytes, str]) -> None:
    body, content_type = post
    before = len(world.handled)
    answer = events.handle_event(world.rt, body, content_type)
    assert answer.status in (200, 400, 403), answer
    json.loads(answer.body)
    reached = len(world.handled) - before
    event(f"HTTP {answer.status}, handler reached: {reached}")
    assert reached == (1 if _genuine_event(body, content_type) else 0), (answer, body)
    tenant = store.get_tenant(world.rt, MEMBER)
    if not tenant.active or not world.stored_token_is(APP_TOKEN):  # the genuine uninstall/reinstall in the mix
        world.reinstall()


@fuzz(100)
@given(
    posted([_onappinstall(), _onappinstall(refresh="stolen"), _page_install(), _page_install(refresh="stolen")]),
    st.dictionaries(st.sampled_from(["DOMAIN", "PROTOCOL", "LANG", "APP_SID", "member_id"]), _VALUE_JUNK, max_size=4),
)
def test_installs_are_verified_and_bad_input_never_is_a_500(
    world: World, post: tuple[bytes, str], query: dict[str, str]
) -> None:
    body, content_type = post
    answer = install.handle_install(world.rt, query, body, content_type)
    assert answer.status in (200, 400, 403, 502), answer
    event(f"HTTP {answer.status}")
    if answer.content_type.startswith("application/json"):
        json.loads(answer.body)
    else:
        assert answer.body.startswith("<!DOCTYPE html>")
    if GOOD_REFRESH.encode() not in body:
        # not confirmed by the OAuth server: the genuine application token is still the one stored
        assert world.stored_token_is(APP_TOKEN), (answer, body)
    if not world.stored_token_is(APP_TOKEN) or not store.get_tenant(world.rt, MEMBER).active:
        world.reinstall()
