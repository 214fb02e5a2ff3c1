"""The Bitrix24 client over ``httpx.MockTransport``: request encoding, the error model, retry/refresh/redirect
decisions (protocols.md §A1.3-A1.5, §A3, §A4, §A5). Behaviour against the emulator is in tests/integration."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from cloud_builders import REGION

from cloud.bitrix24.client import BatchResult, Bitrix24Client, RetryPolicy, client_for, domain_of
from cloud.bitrix24.errors import AuthorizationLost, MethodError, PortalUnavailable, RateLimited
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.tenants import store
from cloud.tenants.store import Install, OAuthTokens

pytest_plugins = ["cloud_testkit"]

MEMBER = "a223c6b3710f85df22e9377d6c4f7553"
ENDPOINT = "https://acme.bitrix24.com/rest/"
OAUTH = "https://oauth.example/oauth/token/"
Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Portal:
    """Answers from a script: a list of responses (or exceptions) per URL path, the last one repeating."""

    def __init__(self) -> None:
        self.script: dict[str, list[httpx.Response | Exception]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, path: str, *answers: httpx.Response | Exception) -> None:
        self.script[path] = list(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers = self.script.get(request.url.path)
        if not answers:
            return httpx.Response(
                404, json={"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
            )
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path == path]


def ok(result: Any) -> httpx.Response:
    return httpx.Response(200, json={"result": result, "time": {"start": 1}})


def err(status: int, code: str, description: str = "") -> httpx.Response:
    return httpx.Response(status, json={"error": code, "error_description": description})


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def portal() -> Portal:
    return Portal()


@pytest.fixture
def b24rt(rt: Runtime, portal: Portal) -> Iterator[Runtime]:
    settings = Settings(
        table_prefix="test-", region=REGION, b24_client_id="app.1", b24_client_secret="s3cret", b24_oauth_url=OAUTH
    )
    runtime = Runtime(settings, http_client_factory=lambda: httpx.Client(transport=httpx.MockTransport(portal)))
    store.save_install(
        runtime,
        Install(
            tenant=MEMBER,
            domain="acme.bitrix24.com",
            client_endpoint=ENDPOINT,
            application_token="apptok",
            tokens=OAuthTokens(access_token="acc-1", refresh_token="ref-1", access_expires_at=5000),
        ),
    )
    yield runtime


@pytest.fixture
def client(b24rt: Runtime, fake_time: FakeTime) -> Bitrix24Client:
    policy = RetryPolicy(sleep=fake_time.sleep, clock=fake_time.clock, wall_clock=fake_time.clock, random=lambda: 0.5)
    return client_for(b24rt, MEMBER, policy)


def test_call_posts_json_with_the_token_to_the_portals_endpoint(client: Bitrix24Client, portal: Portal) -> None:
    portal.on("/rest/user.get", ok([{"ID": "1"}]))
    assert client.call("user.get", {"FILTER": {"UF_PHONE_INNER": "101"}}) == [{"ID": "1"}]
    [request] = portal.requests
    assert str(request.url) == ENDPOINT + "user.get"
    assert json.loads(request.content) == {"FILTER": {"UF_PHONE_INNER": "101"}, "auth": "acc-1"}


@pytest.mark.parametrize(
    ("response", "error", "attributes"),
    [
        (err(400, "ERROR_CORE", "Call is not found"), MethodError, {"code": "ERROR_CORE", "http_status": 400}),
        (err(403, "", "Access denied."), MethodError, {"code": "", "description": "Access denied."}),
        (err(401, "invalid_token", "Unable to get application by token"), AuthorizationLost, {}),
        (err(401, "NOT_INSTALLED", "Application not installed"), AuthorizationLost, {}),
        (err(401, "payment_required", "Payment required"), AuthorizationLost, {}),
        (err(410, "PORTAL_DELETED", "Portal was deleted"), AuthorizationLost, {}),
        (err(429, "OPERATION_TIME_LIMIT", "blocked"), RateLimited, {"retry_after": 60.0}),
        (err(500, "INTERNAL_SERVER_ERROR", ""), PortalUnavailable, {"maybe_executed": True}),
        (httpx.Response(502, text="<html>bad gateway</html>"), PortalUnavailable, {"maybe_executed": True}),
        (httpx.Response(200, text="not json"), PortalUnavailable, {"maybe_executed": True}),
        (err(503, "OVERLOAD_LIMIT", "blocked"), PortalUnavailable, {"maybe_executed": False}),
    ],
)
def test_answers_map_to_the_error_model_and_writes_are_sent_once(
    client: Bitrix24Client, portal: Portal, response: httpx.Response, error: type[Exception], attributes: dict[str, Any]
) -> None:
    portal.on("/rest/telephony.externalCall.finish", response)
    with pytest.raises(error) as caught:
        client.call("telephony.externalCall.finish", {"CALL_ID": "x"})
    for name, value in attributes.items():
        assert getattr(caught.value, name) == value
    expected_requests = 1 if error is not PortalUnavailable or attributes["maybe_executed"] else None
    if expected_requests:
        assert len(portal.requests) == 1  # never retried: it may have run


def test_query_limit_is_retried_with_backoff_then_succeeds(
    client: Bitrix24Client, portal: Portal, fake_time: FakeTime
) -> None:
    limit = err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
    portal.on("/rest/telephony.externalCall.register", limit, limit, ok({"CALL_ID": "c1"}))
    assert client.call("telephony.externalCall.register", {"PHONE_NUMBER": "1"}) == {"CALL_ID": "c1"}
    assert len(portal.requests) == 3
    assert fake_time.sleeps == [0.1875, 0.375]  # 0.25·2^n, jitter 0.5 → 3/4 of it


def test_query_limit_within_the_budget_then_rate_limited(
    client: Bitrix24Client, portal: Portal, fake_time: FakeTime
) -> None:
    portal.on("/rest/telephony.externalCall.register", err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"))
    with pytest.raises(RateLimited) as caught:
        client.call("telephony.externalCall.register")
    assert caught.value.retry_after >= 1.0
    assert sum(fake_time.sleeps) <= 2.0 and len(fake_time.sleeps) >= 2
    assert len(portal.requests) == len(fake_time.sleeps) + 1


def test_read_only_methods_are_retried_after_a_5xx_writes_are_not(client: Bitrix24Client, portal: Portal) -> None:
    portal.on("/rest/user.get", err(500, "INTERNAL_SERVER_ERROR"), ok([]))
    assert client.call("user.get") == []
    portal.on("/rest/crm.lead.add", err(500, "INTERNAL_SERVER_ERROR"), ok(5))
    with pytest.raises(PortalUnavailable, match="may have been executed"):
        client.call("crm.lead.add", {"fields": {"TITLE": "x"}})
    assert [r.url.path for r in portal.requests] == ["/rest/user.get", "/rest/user.get", "/rest/crm.lead.add"]


def test_refused_connections_are_retried_timeouts_on_writes_are_not(client: Bitrix24Client, portal: Portal) -> None:
    portal.on("/rest/crm.lead.add", httpx.ConnectError("refused"), ok(7))
    assert client.call("crm.lead.add") == 7
    portal.on("/rest/crm.contact.add", httpx.ConnectError("refused"))
    with pytest.raises(PortalUnavailable) as caught:
        client.call("crm.contact.add")
    assert caught.value.maybe_executed is False
    portal.requests.clear()
    portal.on("/rest/telephony.externalCall.finish", httpx.ReadTimeout("slow"))
    with pytest.raises(PortalUnavailable) as caught:
        client.call("telephony.externalCall.finish")
    assert caught.value.maybe_executed is True and len(portal.requests) == 1


def test_expired_token_refreshes_once_and_retries(client: Bitrix24Client, portal: Portal, b24rt: Runtime) -> None:
    portal.on("/rest/user.current", err(401, "expired_token", "The access token provided has expired."), ok({"ID": 1}))
    portal.on(
        "/oauth/token/",
        httpx.Response(
            200, json={"access_token": "acc-2", "refresh_token": "ref-2", "expires_in": 3600, "member_id": MEMBER}
        ),
    )
    assert client.call("user.current") == {"ID": 1}
    oauth = next(r for r in portal.requests if r.url.path == "/oauth/token/")
    assert "s3cret" not in str(oauth.url) and "ref-1" not in str(oauth.url)
    assert parse_qs(oauth.content.decode()) == {
        "grant_type": ["refresh_token"],
        "client_id": ["app.1"],
        "client_secret": ["s3cret"],
        "refresh_token": ["ref-1"],
    }
    assert [b["auth"] for b in portal.bodies("/rest/user.current")] == ["acc-1", "acc-2"]
    stored = store.load_tokens(b24rt, MEMBER)
    assert (stored.access_token, stored.refresh_token, stored.token_version) == ("acc-2", "ref-2", 2)


def test_a_dead_refresh_token_is_authorization_lost(client: Bitrix24Client, portal: Portal) -> None:
    portal.on("/rest/user.current", err(401, "expired_token"))
    portal.on("/oauth/token/", httpx.Response(400, json={"error": "invalid_grant"}))
    with pytest.raises(AuthorizationLost, match="invalid_grant"):
        client.call("user.current")


def test_a_token_that_expires_again_right_after_refresh_is_not_looped(client: Bitrix24Client, portal: Portal) -> None:
    portal.on("/rest/user.current", err(401, "expired_token"))
    portal.on(
        "/oauth/token/", httpx.Response(200, json={"access_token": "a", "refresh_token": "r", "member_id": MEMBER})
    )
    with pytest.raises(PortalUnavailable, match="expired again"):
        client.call("user.current")
    assert len(portal.bodies("/rest/user.current")) == 2


def test_an_oauth_answer_for_another_portal_is_refused(client: Bitrix24Client, portal: Portal) -> None:
    portal.on("/rest/user.current", err(401, "expired_token"))
    portal.on(
        "/oauth/token/", httpx.Response(200, json={"access_token": "a", "refresh_token": "r", "member_id": "other"})
    )
    with pytest.raises(AuthorizationLost, match="another portal"):
        client.call("user.current")


def test_a_302_is_followed_with_the_body_and_the_new_endpoint_stored(
    client: Bitrix24Client, portal: Portal, b24rt: Runtime
) -> None:
    portal.on(
        "/rest/crm.lead.add",
        httpx.Response(302, headers={"Location": "https://new.bitrix24.com/rest/crm.lead.add"}),
        ok(9),
    )
    assert client.call("crm.lead.add", {"fields": {"TITLE": "x"}}) == 9
    assert [str(r.url) for r in portal.requests] == [
        ENDPOINT + "crm.lead.add",
        "https://new.bitrix24.com/rest/crm.lead.add",
    ]
    assert [r.method for r in portal.requests] == ["POST", "POST"]
    assert portal.bodies("/rest/crm.lead.add")[1]["fields"] == {"TITLE": "x"}
    tenant = store.get_tenant(b24rt, MEMBER)
    assert (tenant.client_endpoint, tenant.domain) == ("https://new.bitrix24.com/rest/", "new.bitrix24.com")


def test_a_redirect_to_plain_http_is_refused(client: Bitrix24Client, portal: Portal) -> None:
    portal.on("/rest/user.get", httpx.Response(302, headers={"Location": "http://evil.example/rest/user.get"}))
    with pytest.raises(PortalUnavailable, match="refused redirect"):
        client.call("user.get")


def test_batch_encodes_commands_and_splits_results_and_errors(client: Bitrix24Client, portal: Portal) -> None:
    portal.on(
        "/rest/batch",
        ok(
            {
                "result": {"reg": {"CALL_ID": "c1"}},
                "result_error": {"show": {"error": "ERROR_CORE", "error_description": "Call is not found"}},
                "result_total": [],
                "result_next": [],
                "result_time": [],
            }
        ),
    )
    result = client.batch(
        {
            "reg": ("telephony.externalCall.register", {"USER_ID": 2, "PHONE_NUMBER": "+7 926", "TYPE": 2}),
            "show": ("telephony.externalCall.show", {"CALL_ID": "$result[reg][CALL_ID]", "USER_ID": [2, 3]}),
        },
        halt=True,
    )
    assert result.results == {"reg": {"CALL_ID": "c1"}}
    assert set(result.errors) == {"show"}
    error = result.errors["show"]
    assert (error.code, error.description, error.http_status, error.method) == (
        "ERROR_CORE",
        "Call is not found",
        None,
        "telephony.externalCall.show",
    )
    [body] = portal.bodies("/rest/batch")
    assert body["halt"] == 1 and body["auth"] == "acc-1"
    assert body["cmd"] == {
        "reg": "telephony.externalCall.register?USER_ID=2&PHONE_NUMBER=%2B7%20926&TYPE=2",
        "show": "telephony.externalCall.show?CALL_ID=$result[reg][CALL_ID]&USER_ID[0]=2&USER_ID[1]=3",
    }


def test_batch_accepts_php_lists_and_refuses_oversized_input(client: Bitrix24Client, portal: Portal) -> None:
    portal.on("/rest/batch", ok({"result": [1, 2], "result_error": [], "result_total": {"0": 5}, "result_next": []}))
    assert client.batch({"0": ("user.get", {}), "1": ("user.get", {})}) == BatchResult(
        {"0": 1, "1": 2}, {}, {"0": 5}, {}
    )
    with pytest.raises(ValueError, match="at most 50"):
        client.batch({f"c{i}": ("user.get", {}) for i in range(51)})
    with pytest.raises(ValueError, match="key"):
        client.batch({"a[b]": ("user.get", {})})
    assert client.batch({}) == BatchResult({}, {})


def test_tokens_never_reach_error_messages(client: Bitrix24Client, portal: Portal) -> None:
    portal.on("/rest/user.get", err(400, "ERROR_CORE", "bad auth acc-1 given"))
    with pytest.raises(MethodError) as caught:
        client.call("user.get")
    assert "acc-1" not in str(caught.value) and "***" in str(caught.value)


def test_unknown_or_uninstalled_tenants_have_no_client(b24rt: Runtime) -> None:
    with pytest.raises(AuthorizationLost):
        client_for(b24rt, "f" * 32)
    with pytest.raises(AuthorizationLost):
        client_for(b24rt, "bad#tenant")
    store.mark_uninstalled(b24rt, MEMBER)
    with pytest.raises(AuthorizationLost, match="uninstalled"):
        client_for(b24rt, MEMBER)


def test_domain_of_endpoints() -> None:
    assert domain_of("https://acme.bitrix24.com/rest/") == "acme.bitrix24.com"
    assert domain_of("http://127.0.0.1:8090/acme.bitrix24.com/rest/") == "acme.bitrix24.com"


def test_an_unreachable_oauth_server_leaves_the_call_not_executed(client: Bitrix24Client, portal: Portal) -> None:
    portal.on("/rest/crm.lead.add", err(401, "expired_token"))
    portal.on("/oauth/token/", httpx.ReadTimeout("slow"))
    with pytest.raises(PortalUnavailable) as caught:
        client.call("crm.lead.add")
    assert caught.value.maybe_executed is False and caught.value.method == "crm.lead.add"


@pytest.mark.parametrize("method", ["", "../oauth/token", "user.get?x=1", "user get"])
def test_method_names_are_checked_before_anything_is_sent(client: Bitrix24Client, portal: Portal, method: str) -> None:
    with pytest.raises(ValueError, match="method"):
        client.call(method)
    assert portal.requests == []
