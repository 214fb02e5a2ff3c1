"""The vendor's admin API and ``license-admin``: what they do, and that only an admin key gets in."""

from __future__ import annotations

import json
import secrets

import pytest
from chalice.test import Client
from license_builders import START, Clock, get, post

from license_server import api_keys, licenses
from license_server.admin import main
from license_server.errors import Unauthenticated
from license_server.runtime import Runtime

pytest_plugins = ["license_testkit"]

DAY = 86_400


def check(server: Client, key: str, clock: Clock, member_id: str = "portal-a") -> tuple[int, object]:
    body = {"member_id": member_id, "nonce": secrets.token_urlsafe(16), "sent_at": int(clock.now.timestamp())}
    return post(server, "/v1/check", key, body)


ADMIN_CALLS = [
    ("GET", "/v1/admin/licenses", None),
    ("GET", "/v1/admin/licenses/portal-a", None),
    ("POST", "/v1/admin/licenses", {"member_id": "portal-b", "plan": "business", "days": 30}),
    ("POST", "/v1/admin/licenses/portal-a/extend", {"days": 30}),
    ("POST", "/v1/admin/licenses/portal-a/plan", {"plan": "enterprise"}),
    ("POST", "/v1/admin/licenses/portal-a/revoke", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_a_backend_key_gets_403_on_every_admin_route(
    server: Client, lic: Runtime, backend_key: str, clock: Clock, method: str, path: str, body: object
) -> None:
    check(server, backend_key, clock)
    before = licenses.get_license(lic, "portal-a")
    status, answer = get(server, path, backend_key) if method == "GET" else post(server, path, backend_key, body)
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    assert licenses.get_license(lic, "portal-a") == before
    assert [lic.member_id for lic in licenses.list_licenses(lic)] == ["portal-a"]


@pytest.mark.parametrize(
    "key",
    [
        "plk_" + "x" * 43,  # well-formed, unknown
        "pbxl_" + "x" * 43,  # a customer's agent token (the cloud's format)
        "not-a-key",
    ],
)
@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS[:1] + ADMIN_CALLS[-1:])
def test_unknown_keys_and_customer_credentials_get_401_on_the_admin_api(
    server: Client, lic: Runtime, key: str, method: str, path: str, body: object
) -> None:
    status, answer = get(server, path, key) if method == "GET" else post(server, path, key, body)
    assert (status, answer["error"]["code"]) == (401, "unauthenticated")


def test_a_revoked_admin_key_is_refused(server: Client, lic: Runtime, admin_key: str, clock: Clock) -> None:
    api_keys.revoke_key(lic, api_keys.hash_key(admin_key)[:12], clock.now)
    assert get(server, "/v1/admin/licenses", admin_key)[0] == 401


def test_issue_extend_change_plan_revoke_and_show_usage(
    server: Client, lic: Runtime, admin_key: str, backend_key: str, clock: Clock
) -> None:
    check(server, backend_key, clock)  # the trial
    status, issued = post(
        server,
        "/v1/admin/licenses",
        admin_key,
        {"member_id": "portal-a", "plan": "start", "days": 30, "users_with_cards": 12},
    )
    assert status == 200
    assert (issued["plan"], issued["trial"], issued["limits"]) == (
        "start",
        False,
        {"users_with_cards": 12, "agents": 1},
    )
    assert issued["valid_until"] == int(START.timestamp()) + 30 * DAY
    assert "recordings" in issued["features"] and "multiple_pbx" not in issued["features"]
    status, extended = post(server, "/v1/admin/licenses/portal-a/extend", admin_key, {"days": 10})
    assert extended["valid_until"] == int(START.timestamp()) + 40 * DAY
    status, moved = post(server, "/v1/admin/licenses/portal-a/plan", admin_key, {"plan": "enterprise"})
    assert (
        moved["limits"] == {"users_with_cards": None, "agents": None}
        and moved["valid_until"] == extended["valid_until"]
    )
    status, shown = get(server, "/v1/admin/licenses/portal-a", admin_key)
    assert shown["usage"] == {"users_with_cards": 0, "agents": 0} and shown["last_check_at"] == int(START.timestamp())
    status, revoked = post(server, "/v1/admin/licenses/portal-a/revoke", admin_key, {})
    assert revoked["status"] == "revoked"
    assert check(server, backend_key, clock)[0] == 403
    status, listing = get(server, "/v1/admin/licenses", admin_key)
    assert [item["member_id"] for item in listing["licenses"]] == ["portal-a"]
    # issuing again reinstates
    post(server, "/v1/admin/licenses", admin_key, {"member_id": "portal-a", "plan": "business", "days": 365})
    assert check(server, backend_key, clock)[0] == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/admin/licenses", {"member_id": "portal-a", "plan": "gold", "days": 30}, 400, "unknown plan"),
        ("/v1/admin/licenses", {"member_id": "portal-a", "plan": "start", "days": 0}, 400, "days"),
        ("/v1/admin/licenses", {"member_id": "bad#id", "plan": "start", "days": 3}, 400, "portal id"),
        ("/v1/admin/licenses", {"plan": "start"}, 400, "member_id"),
        ("/v1/admin/licenses/nobody/extend", {"days": 3}, 404, "no license"),
        ("/v1/admin/licenses/nobody/plan", {"plan": "start"}, 404, "no license"),
        ("/v1/admin/licenses/nobody/revoke", {}, 404, "no license"),
    ],
)
def test_admin_mistakes_get_clear_errors(
    server: Client, admin_key: str, path: str, body: object, status: int, message: str
) -> None:
    got, answer = post(server, path, admin_key, body)
    assert got == status and message in answer["error"]["message"]


def test_license_admin_cli(lic: Runtime, clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["issue", "portal-z", "--plan", "business", "--days", "30", "--agents", "2"], runtime=lic) == 0
    assert json.loads(capsys.readouterr().out)["limits"] == {"users_with_cards": 50, "agents": 2}
    assert main(["extend", "portal-z", "--days", "5"], runtime=lic) == 0
    assert main(["plan", "portal-z", "start"], runtime=lic) == 0
    assert main(["revoke", "portal-z"], runtime=lic) == 0
    capsys.readouterr()
    assert main(["list"], runtime=lic) == 0
    out = capsys.readouterr().out
    assert "portal-z" in out and "revoked" in out and "start" in out
    assert main(["show", "nobody"], runtime=lic) == 1
    assert "no license" in capsys.readouterr().err
    assert main(["key", "create", "--role", "backend", "--name", "cloud eu"], runtime=lic) == 0
    created = capsys.readouterr().out
    key_id = created.split("key_id: ")[1].split()[0]
    secret = created.split("key:    ")[1].split()[0]
    assert api_keys.authenticate(lic, f"Bearer {secret}", "backend").key_id == key_id
    assert main(["key", "list"], runtime=lic) == 0
    assert secret not in capsys.readouterr().out  # never the secret again
    assert main(["key", "revoke", key_id], runtime=lic) == 0
    with pytest.raises(Unauthenticated):
        api_keys.authenticate(lic, f"Bearer {secret}", "backend")


def test_license_admin_generates_a_key_pair_the_cloud_can_parse(capsys: pytest.CaptureFixture[str]) -> None:
    from license_protocol import parse_public_keys, parse_signing_key

    assert main(["signing-key", "generate", "--kid", "2026-12"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    kid, key = parse_signing_key(lines["LICENSE_SIGNING_KEY"].split()[0])
    public = parse_public_keys(lines["LICENSE_PUBLIC_KEYS"].split()[0])
    assert kid == "2026-12" and list(public) == ["2026-12"]
    public[kid].verify(key.sign(b"lease"), b"lease")  # the same pair
