"""``POST /v1/check``: trials, leases, and every request the server must refuse."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from chalice.test import Client
from license_builders import PUBLIC_KEYS, START, Clock, bearer, get, post

from license_protocol import ALL_FEATURES, verify_lease
from license_server import api_keys, licenses
from license_server.runtime import Runtime

pytest_plugins = ["license_testkit"]


def request(clock: Clock, member_id: str = "portal-a", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "member_id": member_id,
        "usage": {"users_with_cards": 3, "agents": 1},
        "nonce": secrets.token_urlsafe(16),
        "sent_at": int(clock.now.timestamp()),
    }
    body.update(changes)
    return body


def test_a_new_portal_gets_a_14_day_trial_with_everything_on_its_first_check(
    server: Client, lic: Runtime, backend_key: str, clock: Clock
) -> None:
    body = request(clock)
    status, answer = post(server, "/v1/check", backend_key, body)
    assert status == 200
    lease = verify_lease(answer["lease"], PUBLIC_KEYS)
    assert (lease.member_id, lease.plan, lease.trial, lease.nonce) == ("portal-a", "trial", True, body["nonce"])
    assert set(lease.features) == ALL_FEATURES
    assert lease.license_until == int(START.timestamp()) + 14 * 86_400
    assert lease.iat == int(START.timestamp()) and lease.exp == lease.iat + 3 * 86_400
    assert lease.grace == 72 * 3_600
    stored = licenses.get_license(lic, "portal-a")
    assert stored.usage is not None and stored.usage.users_with_cards == 3
    assert stored.checked_by == api_keys.hash_key(backend_key)[:12]


def test_the_trial_starts_once_and_the_lease_never_outlives_the_license(
    server: Client, backend_key: str, clock: Clock
) -> None:
    post(server, "/v1/check", backend_key, request(clock))
    clock.advance(days=13)
    status, answer = post(server, "/v1/check", backend_key, request(clock))
    lease = verify_lease(answer["lease"], PUBLIC_KEYS)
    assert status == 200 and lease.exp == lease.license_until == int(START.timestamp()) + 14 * 86_400
    clock.advance(days=1)
    status, answer = post(server, "/v1/check", backend_key, request(clock))
    assert (status, answer["error"]["code"]) == (403, "license_expired")
    assert "trial" in answer["error"]["message"]


def test_a_replayed_request_is_refused(server: Client, backend_key: str, clock: Clock) -> None:
    body = request(clock)
    assert post(server, "/v1/check", backend_key, body)[0] == 200
    status, answer = post(server, "/v1/check", backend_key, body)
    assert (status, answer["error"]["code"]) == (409, "replayed")
    assert "fresh nonce" in answer["error"]["message"]


@pytest.mark.parametrize("skew", [-301, 301, -86_400])
def test_a_request_outside_the_replay_window_is_refused(
    server: Client, backend_key: str, clock: Clock, skew: int
) -> None:
    status, answer = post(server, "/v1/check", backend_key, request(clock, sent_at=int(clock.now.timestamp()) + skew))
    assert (status, answer["error"]["code"]) == (400, "stale_request")
    assert "clock" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"member_id": "a#b"}, "member_id"),
        ({"nonce": "short"}, "nonce"),
        ({"usage": {"users_with_cards": -1}}, "usage.users_with_cards"),
        ({"extra": 1}, "extra"),
        ({"sent_at": "now"}, "sent_at"),
    ],
)
def test_a_malformed_request_is_refused_naming_the_field(
    server: Client, lic: Runtime, backend_key: str, clock: Clock, changes: dict[str, Any], where: str
) -> None:
    status, answer = post(server, "/v1/check", backend_key, request(clock, **changes))
    assert (status, answer["error"]["code"]) == (400, "bad_request")
    assert where in answer["error"]["message"]
    assert list(licenses.list_licenses(lic)) == []  # nothing signed, nothing made known


def test_a_body_that_is_not_json_is_refused(server: Client, backend_key: str) -> None:
    response = server.http.post("/v1/check", headers=bearer(backend_key), body=b"{not json")
    assert response.status_code == 400 and b"not JSON" in response.body


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer plk_" + "A" * 43, "Bearer pbxl_" + "A" * 43],
)
def test_without_a_known_backend_key_nothing_is_signed_and_no_portal_becomes_known(
    server: Client, lic: Runtime, clock: Clock, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = server.http.post("/v1/check", headers=headers, body=json.dumps(request(clock)).encode())
    assert response.status_code == 401
    assert list(licenses.list_licenses(lic)) == []


def test_an_admin_key_cannot_check(server: Client, lic: Runtime, admin_key: str, clock: Clock) -> None:
    status, answer = post(server, "/v1/check", admin_key, request(clock))
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    assert list(licenses.list_licenses(lic)) == []


def test_a_revoked_backend_key_is_refused(server: Client, lic: Runtime, backend_key: str, clock: Clock) -> None:
    key_id = api_keys.hash_key(backend_key)[:12]
    api_keys.revoke_key(lic, key_id, clock.now)
    status, answer = post(server, "/v1/check", backend_key, request(clock))
    assert (status, answer["error"]["code"]) == (401, "unauthenticated")
    assert "revoked" in answer["error"]["message"]


def test_a_revoked_license_gets_no_new_lease(server: Client, lic: Runtime, backend_key: str, clock: Clock) -> None:
    assert post(server, "/v1/check", backend_key, request(clock))[0] == 200
    licenses.revoke(lic, "portal-a")
    status, answer = post(server, "/v1/check", backend_key, request(clock))
    assert (status, answer["error"]["code"]) == (403, "license_revoked")


def test_a_server_without_a_signing_key_answers_internal_and_remembers_nothing(
    server: Client, lic: Runtime, backend_key: str, clock: Clock
) -> None:
    import dataclasses

    import license_server.app

    broken = Runtime(dataclasses.replace(lic.settings, signing_key=None), clock=clock)
    license_server.app.use_runtime(broken)
    status, answer = post(server, "/v1/check", backend_key, request(clock))
    assert (status, answer["error"]["code"]) == (500, "internal")
    assert "LICENSE_SIGNING_KEY" not in answer["error"]["message"]
    license_server.app.use_runtime(lic)
    assert list(licenses.list_licenses(lic)) == []


def test_the_public_key_endpoint_gives_what_the_cloud_configures(server: Client) -> None:
    from license_protocol import encode_public_key

    status, answer = get(server, "/v1/keys", None)
    assert status == 200
    assert answer["keys"] == [{"kid": "k1", "alg": "Ed25519", "public_key": encode_public_key(PUBLIC_KEYS["k1"])}]
