"""Who may use the settings API: a user's own Bitrix24 token, verified by their own portal (the emulator over
HTTP), cached briefly under a hash; admins write, everyone else reads the status; no tenant reaches another."""

from __future__ import annotations

import json
import secrets

import pytest
from chalice.test import Client
from webapp_builders import ANNA, OLGA, Portals, body

from cloud.crm.settings import load_settings
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item
from cloud.tenants import store
from cloud.webapp.auth import CACHE_SECONDS, authenticate, token_hash
from cloud.webapp.errors import NotAuthenticated, PortalUnreachable

pytest_plugins = ["cloud_testkit", "webapp_testkit"]


def test_the_portal_vouches_for_its_admin_and_its_users(webrt: Runtime, b24: Portals) -> None:
    admin = authenticate(webrt, b24.member("acme"), b24.token("acme", OLGA))
    assert (admin.tenant, admin.user_id, admin.admin, admin.name) == (b24.member("acme"), OLGA, True, "Olga Owner")
    anna = authenticate(webrt, b24.member("acme"), b24.token("acme", ANNA))
    assert (anna.user_id, anna.admin, anna.name) == (ANNA, False, "Anna Petrova")


@pytest.mark.parametrize("token", ["", "short", "x" * 600, "has spaces in it 1234", "ünïcode-token-1234567"])
def test_malformed_tokens_are_refused_without_asking_the_portal(webrt: Runtime, b24: Portals, token: str) -> None:
    before = b24.emulator.requests
    with pytest.raises(NotAuthenticated):
        authenticate(webrt, b24.member("acme"), token)
    assert b24.emulator.requests == before


def test_a_forged_token_is_refused_by_the_portal(webrt: Runtime, b24: Portals) -> None:
    with pytest.raises(NotAuthenticated) as caught:
        authenticate(webrt, b24.member("acme"), secrets.token_hex(16))
    assert caught.value.status == 401 and caught.value.code == "unauthenticated"


def test_an_expired_token_says_so_so_the_page_can_renew_it(webrt: Runtime, b24: Portals) -> None:
    token = b24.token("acme", OLGA)
    b24.emulator.expire_all_tokens()
    with pytest.raises(NotAuthenticated) as caught:
        authenticate(webrt, b24.member("acme"), token)
    assert caught.value.code == "token_expired"


def test_a_token_of_another_portal_never_opens_this_one(webrt: Runtime, b24: Portals) -> None:
    beta_admin = b24.token("beta", OLGA)
    with pytest.raises(NotAuthenticated):
        authenticate(webrt, b24.member("acme"), beta_admin)
    assert authenticate(webrt, b24.member("beta"), beta_admin).tenant == b24.member("beta")
    # cached for beta now, and still refused for acme: the cache is per tenant
    with pytest.raises(NotAuthenticated):
        authenticate(webrt, b24.member("acme"), beta_admin)


@pytest.mark.parametrize("member", ["not-installed-portal", "a#b", "", "x" * 65])
def test_unknown_or_malformed_member_ids_get_the_same_answer(webrt: Runtime, b24: Portals, member: str) -> None:
    with pytest.raises(NotAuthenticated) as caught:
        authenticate(webrt, member, b24.token("acme", OLGA))
    assert caught.value.message.startswith(("the Bitrix24 session could not be verified", "no Bitrix24 session"))


def test_the_answer_is_cached_under_a_hash_briefly(webrt: Runtime, b24: Portals) -> None:
    token = b24.token("acme", OLGA)
    authenticate(webrt, b24.member("acme"), token, now=1_000_000.0)
    asked = b24.emulator.requests
    assert authenticate(webrt, b24.member("acme"), token, now=1_000_000.0 + CACHE_SECONDS - 1).admin
    assert b24.emulator.requests == asked  # from the cache
    items = [from_item(i) for i in webrt.dynamodb.scan(TableName=webrt.tables.web_sessions)["Items"]]
    assert [i["pk"] for i in items] == [f"{b24.member('acme')}#{token_hash(token)}"]
    assert token not in json.dumps(items)
    assert items[0]["expires_at"] == 1_000_000 + CACHE_SECONDS
    authenticate(webrt, b24.member("acme"), token, now=1_000_000.0 + CACHE_SECONDS)
    assert b24.emulator.requests == asked + 1  # expired (DynamoDB's TTL deletion lags): asked again


def test_an_uninstall_ends_cached_sessions_at_once(webrt: Runtime, b24: Portals) -> None:
    token = b24.token("acme", OLGA)
    authenticate(webrt, b24.member("acme"), token)
    store.mark_uninstalled(webrt, b24.member("acme"))
    with pytest.raises(NotAuthenticated):
        authenticate(webrt, b24.member("acme"), token)


def test_a_portal_that_does_not_answer_is_a_retry_not_a_refusal(webrt: Runtime, b24: Portals) -> None:
    token = b24.token("acme", OLGA)
    b24.emulator.faults.outage_until = b24.emulator.clock.now() + 60
    with pytest.raises(PortalUnreachable) as caught:
        authenticate(webrt, b24.member("acme"), token)
    assert caught.value.status == 503


# -- through the HTTP routes --------------------------------------------------------------------------------------
ADMIN_ONLY = [
    ("GET", "/b24/api/extensions", None),
    ("GET", "/b24/api/settings", None),
    ("GET", "/b24/api/calls", None),
    ("PATCH", "/b24/api/settings", {"register_internal": True}),
    ("POST", "/b24/api/tokens", {"name": "HQ"}),
    ("DELETE", "/b24/api/tokens/ag_0123456789abcdef", None),
    ("DELETE", "/b24/api/card_users/11", None),
]


def _call(web: Client, method: str, path: str, headers: dict[str, str], payload: object = None) -> object:
    return web.http.request(method, path, headers=headers, body=json.dumps(payload).encode() if payload else b"")


@pytest.mark.parametrize(("method", "path", "payload"), ADMIN_ONLY)
def test_users_who_are_not_admins_see_the_status_and_change_nothing(
    webrt: Runtime, b24: Portals, web: Client, method: str, path: str, payload: object
) -> None:
    headers = b24.headers("acme", ANNA)
    assert web.http.get("/b24/api/status", headers=headers).status_code == 200
    response = _call(web, method, path, headers, payload)
    assert response.status_code == 403 and body(response)["error"] == "forbidden"  # type: ignore[attr-defined]
    assert load_settings(webrt, b24.member("acme")).register_internal is False


@pytest.mark.parametrize(("method", "path", "payload"), [("GET", "/b24/api/status", None), *ADMIN_ONLY])
def test_another_portals_admin_can_neither_read_nor_write(
    webrt: Runtime, b24: Portals, web: Client, method: str, path: str, payload: object
) -> None:
    headers = b24.headers("acme", OLGA, token=b24.token("beta", OLGA))
    response = _call(web, method, path, headers, payload)
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert load_settings(webrt, b24.member("acme")).register_internal is False
    assert load_settings(webrt, b24.member("beta")).register_internal is False


def test_the_tenant_is_the_verified_one_never_one_from_the_body(webrt: Runtime, b24: Portals, web: Client) -> None:
    headers = b24.headers("beta", OLGA)
    response = web.http.patch(
        "/b24/api/settings", headers=headers, body=json.dumps({"tenant": b24.member("acme"), "register_internal": True})
    )
    assert response.status_code == 400  # not a settings field: nothing saved anywhere
    assert (
        web.http.patch("/b24/api/settings", headers=headers, body=json.dumps({"register_internal": True})).status_code
        == 200
    )
    assert load_settings(webrt, b24.member("beta")).register_internal is True
    assert load_settings(webrt, b24.member("acme")).register_internal is False


def test_cookies_are_not_a_way_in(b24: Portals, web: Client) -> None:
    token = b24.token("acme", OLGA)
    headers = {"Cookie": f"AUTH_ID={token}; member_id={b24.member('acme')}", "X-B24-Member-Id": b24.member("acme")}
    assert web.http.get("/b24/api/status", headers=headers).status_code == 401
    basic = {"Authorization": f"Basic {token}", "X-B24-Member-Id": b24.member("acme")}
    assert web.http.get("/b24/api/status", headers=basic).status_code == 401


def test_answers_never_carry_the_token_and_are_not_cached_by_browsers(b24: Portals, web: Client) -> None:
    token = b24.token("acme", OLGA)
    response = web.http.get("/b24/api/status", headers=b24.headers("acme", OLGA, token=token))
    assert response.status_code == 200 and token not in response.body.decode()
    assert response.headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in response.headers
