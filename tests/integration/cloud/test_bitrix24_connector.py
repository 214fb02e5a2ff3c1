"""The Bitrix24 client against the emulator over real HTTP on loopback (DynamoDB: moto in-process): token
expiry and concurrent refreshes, rate-limit bursts, 5xx storms, outages, batch references, a portal rename."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws

from cloud.bitrix24 import client as client_module
from cloud.bitrix24 import oauth
from cloud.bitrix24.client import Bitrix24Client, RetryPolicy, client_for
from cloud.bitrix24.errors import AuthorizationLost, MethodError, PortalUnavailable, RateLimited
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.storage.tables import create_tables
from cloud.tenants import store
from cloud.tenants.store import Install, OAuthTokens
from sandbox.bitrix24 import App, Emulator, EmulatorServer, ManualClock, User

pytestmark = [pytest.mark.integration]

DOMAIN = "acme.bitrix24.com"
CLIENT_ID = "local.pbxlink.1"
SECRET = "app-secret"
REGION = "us-east-1"


@dataclass
class World:
    emulator: Emulator
    server: EmulatorServer
    settings: Settings
    tenant: str
    clock: ManualClock
    runtimes: list[Runtime] = field(default_factory=list)

    def runtime(self) -> Runtime:
        """A fresh runtime, as another Lambda container would have."""
        self.runtimes.append(Runtime(self.settings))
        return self.runtimes[-1]

    def client(self, rt: Runtime | None = None, *, sleep_advances_clock: bool = True) -> Bitrix24Client:
        """Waiting moves the emulator's clock (so its leaky bucket drains); the real sleep is only a token one,
        so that a thread waiting for another's write (a lost refresh race) gives it real time."""

        def sleep(seconds: float) -> None:
            if sleep_advances_clock:
                self.clock.advance(seconds)
            time.sleep(min(seconds, 0.02))

        policy = RetryPolicy(sleep=sleep, clock=self.clock.now, wall_clock=self.clock.now)
        return client_for(rt or self.runtime(), self.tenant, policy)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    clock = ManualClock()
    emulator = Emulator(clock, seed=7)
    with mock_aws(), EmulatorServer(emulator) as server:
        create_tables(boto3.client("dynamodb", region_name=REGION), "it-")
        emulator.add_app(App(CLIENT_ID, SECRET))
        portal = emulator.add_portal(DOMAIN, burst=5, rate=2)
        portal.add_user(User(2, "Anna", phone_inner="101"))
        portal.add_user(User(3, "Boris", phone_inner="102"))
        installation, tokens = emulator.install(DOMAIN, CLIENT_ID)
        settings = Settings(
            table_prefix="it-",
            region=REGION,
            b24_client_id=CLIENT_ID,
            b24_client_secret=SECRET,
            b24_oauth_url=f"{server.url}/oauth/token/",
        )
        world = World(emulator, server, settings, tokens["member_id"], clock)
        store.save_install(
            world.runtime(),
            Install(
                tenant=tokens["member_id"],
                domain=DOMAIN,
                client_endpoint=tokens["client_endpoint"],
                application_token=installation.application_token,
                tokens=OAuthTokens(
                    access_token=tokens["access_token"],
                    refresh_token=tokens["refresh_token"],
                    access_expires_at=tokens["expires"],
                ),
            ),
        )
        try:
            yield world
        finally:
            for rt in world.runtimes:
                rt.close()


def used_refresh_tokens(emulator: Emulator) -> int:
    return sum(grant.used for grant in emulator.refresh.values())


def test_expired_tokens_mid_use_are_refreshed_and_stored(world: World) -> None:
    client = world.client()
    assert client.call("user.current")["ID"] == "1"
    world.emulator.expire_all_tokens()
    assert client.call("user.get", {"FILTER": {"UF_PHONE_INNER": "101"}})[0]["ID"] == "2"
    tokens = store.load_tokens(world.runtime(), world.tenant)
    assert tokens.token_version == 2 and used_refresh_tokens(world.emulator) == 1
    assert world.client().call("user.current")["ID"] == "1"  # another Lambda picks the new tokens up


def test_two_lambdas_refreshing_at_once_rotate_exactly_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = world.client(), world.client()
    for client in (first, second):
        client.call("user.current")  # both hold version 1
    world.emulator.expire_all_tokens()
    at_oauth = threading.Barrier(2, timeout=10)
    outcomes: list[str] = []

    def refresh_together(*args: Any) -> Any:
        at_oauth.wait()  # both go to the OAuth server with the same refresh token
        try:
            grant = oauth.refresh_tokens(*args)
        except oauth.OAuthRefused as exc:
            outcomes.append(exc.code)
            raise
        outcomes.append("rotated")
        return grant

    monkeypatch.setattr(client_module, "refresh_tokens", refresh_together)
    barrier = threading.Barrier(2)
    results: dict[int, Any] = {}

    def run(index: int, client: Bitrix24Client) -> None:
        barrier.wait()
        results[index] = client.call("user.get", {"FILTER": {"UF_PHONE_INNER": "102"}})

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert [results[i][0]["ID"] for i in (0, 1)] == ["3", "3"]
    assert sorted(outcomes) == ["invalid_grant", "rotated"]  # the loser re-read the winner's tokens
    assert used_refresh_tokens(world.emulator) == 1
    assert store.load_tokens(world.runtime(), world.tenant).token_version == 2


def test_a_rate_limit_burst_is_absorbed_by_backoff(world: World) -> None:
    client = world.client()
    answers = [client.call("user.get", {"FILTER": {"ID": 2}}) for _ in range(12)]  # burst of the bucket is 5
    assert all(answer[0]["ID"] == "2" for answer in answers)


def test_a_rate_limit_that_does_not_drain_in_the_budget_raises_rate_limited(world: World) -> None:
    client = world.client(sleep_advances_clock=False)
    for _ in range(5):
        client.call("user.current")
    with pytest.raises(RateLimited) as caught:
        client.call("telephony.externalCall.register", {"USER_ID": 2, "PHONE_NUMBER": "79261234567", "TYPE": 2})
    assert caught.value.retry_after >= 1.0
    assert world.emulator.portals[DOMAIN].calls == {}


def test_a_503_storm_fails_writes_once_and_retries_reads(world: World) -> None:
    client = world.client()
    world.emulator.faults.rate_limit = False
    world.emulator.faults.server_error_rate = 1.0
    before = world.emulator.requests
    with pytest.raises(PortalUnavailable) as caught:
        client.call("telephony.externalCall.register", {"USER_ID": 2, "PHONE_NUMBER": "79261234567", "TYPE": 2})
    assert caught.value.maybe_executed is True
    assert world.emulator.requests == before + 1  # a write that may have run is never sent twice
    world.emulator.faults.server_error_rate = 0.5
    assert client.call("user.current")["ID"] == "1"  # reads are retried within the budget (seeded faults)
    world.emulator.faults.server_error_rate = 0.0
    world.emulator.faults.query_limit_rate = 1.0
    with pytest.raises(RateLimited):
        client.call("user.current")


def test_an_outage_is_portal_unavailable(world: World) -> None:
    client = world.client(sleep_advances_clock=False)
    world.emulator.faults.outage_until = world.clock.now() + 60
    with pytest.raises(PortalUnavailable) as caught:
        client.call("telephony.externalCall.finish", {"CALL_ID": "x", "USER_ID": 2})
    assert caught.value.maybe_executed is True
    world.emulator.faults.outage_mode = "reset"
    with pytest.raises(PortalUnavailable) as caught:
        client.call("telephony.externalCall.finish", {"CALL_ID": "x", "USER_ID": 2})
    assert caught.value.maybe_executed is True


def test_a_refused_connection_was_not_executed(world: World) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rt = world.runtime()
    store.update_endpoint(rt, world.tenant, f"http://127.0.0.1:{port}/{DOMAIN}/rest/", DOMAIN)
    with pytest.raises(PortalUnavailable) as caught:
        world.client(rt).call("crm.lead.add", {"fields": {"TITLE": "x"}})
    assert caught.value.maybe_executed is False


def test_batch_registers_and_shows_through_a_reference(world: World) -> None:
    client = world.client()
    result = client.batch(
        {
            "reg": (
                "telephony.externalCall.register",
                {"USER_ID": 2, "PHONE_NUMBER": "+7 926 123-45-67", "TYPE": 2, "SHOW": 0},
            ),
            "show": ("telephony.externalCall.show", {"CALL_ID": "$result[reg][CALL_ID]", "USER_ID": [2, 3]}),
            "bad": ("telephony.externalCall.finish", {"CALL_ID": "externalCall.nope", "USER_ID": 2}),
        }
    )
    call_id = result.results["reg"]["CALL_ID"]
    assert result.results["show"] is True
    assert set(result.errors) == {"bad"} and "Call is not found" in result.errors["bad"].description
    call = world.emulator.portals[DOMAIN].calls[call_id]
    assert call.cards == {2: True, 3: True}


def test_method_errors_are_method_errors(world: World) -> None:
    with pytest.raises(MethodError) as caught:
        world.client().call("telephony.externalCall.finish", {"CALL_ID": "externalCall.nope", "USER_ID": 2})
    assert caught.value.code == "ERROR_CORE" and "Call is not found" in caught.value.description


def test_a_renamed_portal_is_followed_and_remembered(world: World) -> None:
    client = world.client()
    world.emulator.rename_portal(DOMAIN, "acme-new.bitrix24.com")
    lead = client.call("crm.lead.add", {"fields": {"TITLE": "after rename"}})
    assert world.emulator.portals["acme-new.bitrix24.com"].leads[int(lead)].fields["TITLE"] == "after rename"
    tenant = store.get_tenant(world.runtime(), world.tenant)
    assert tenant.domain == "acme-new.bitrix24.com"
    assert tenant.client_endpoint == f"{world.server.url}/acme-new.bitrix24.com/rest/"


def test_uninstall_means_authorization_lost(world: World) -> None:
    client = world.client()
    world.emulator.uninstall(DOMAIN, CLIENT_ID)
    with pytest.raises(AuthorizationLost):
        client.call("user.current")
