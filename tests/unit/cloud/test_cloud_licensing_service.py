"""``cloud.licensing`` with DynamoDB in moto and the real license server app in-process (no sockets)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from chalice.test import Client
from cloud_builders import PROJECT_DIR
from licensing_builders import PUBLIC_KEYS_ENV, START, Clock, LicenseServerDouble

import cloud.app
from cloud import licensing
from cloud.agents import tokens
from cloud.licensing import store
from cloud.licensing.client import LicenseClient
from cloud.runtime import Runtime
from license_protocol import ALL_FEATURES, Usage, generate_signing_key
from license_server import licenses

pytest_plugins = ["cloud_testkit"]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rt(rt: Runtime) -> Runtime:
    """The cloud's runtime, configured with the license server's public key."""
    runtime = Runtime(dataclasses.replace(rt.settings, license_public_keys=PUBLIC_KEYS_ENV))
    cloud.app.use_runtime(runtime)
    return runtime


@pytest.fixture
def lic(rt: Runtime, clock: Clock) -> Iterator[LicenseServerDouble]:
    double = LicenseServerDouble(clock)
    yield double
    double.close()


def test_install_starts_the_trial_and_caches_the_lease(rt: Runtime, lic: LicenseServerDouble, clock: Clock) -> None:
    assert licensing.entitlements(rt, "portal-a", clock.now).state == "restricted"  # never checked
    ent = licensing.on_install(rt, "portal-a", clock.now, client=lic.client)
    assert (ent.state, ent.plan, ent.features) == ("trial", "trial", ALL_FEATURES)
    assert ent.ends_at == START + timedelta(days=14)
    assert licensing.entitlements(rt, "portal-a", clock.now) == ent  # from the cache, no server call
    assert len(lic.transport.requests) == 1


def test_the_check_reports_usage(rt: Runtime, lic: LicenseServerDouble, clock: Clock) -> None:
    tokens.issue_token(rt, "portal-a", "Head office")
    _, revoked = tokens.issue_token(rt, "portal-a", "Old branch")
    tokens.revoke(rt, "portal-a", tokens.authenticate(rt, revoked).agent_id)
    licensing.users_keeping_cards(rt, "portal-a", ["1", "2", "3"], clock.now)
    licensing.check_license(rt, "portal-a", clock.now, client=lic.client)
    assert licenses.get_license(lic.admin, "portal-a").usage == Usage(users_with_cards=3, agents=1)


def test_server_down_keeps_the_lease_then_grace_then_restricted(
    rt: Runtime, lic: LicenseServerDouble, clock: Clock
) -> None:
    licensing.check_license(rt, "portal-a", clock.now, client=lic.client)
    lic.down = True
    ent = licensing.check_license(rt, "portal-a", clock.advance(days=2), client=lic.client)
    assert ent.state == "trial"  # the cached lease still runs
    ent = licensing.check_license(rt, "portal-a", clock.advance(days=1), client=lic.client)
    assert ent.state == "grace" and "ConnectError" in ent.reason and ent.allows("click_to_call")
    ent = licensing.check_license(rt, "portal-a", clock.advance(hours=72), client=lic.client)
    assert ent.state == "restricted" and not ent.allows("click_to_call") and ent.limits.users_with_cards == 2
    lic.down = False
    assert licensing.check_license(rt, "portal-a", clock.now, client=lic.client).state == "trial"


def test_a_revocation_takes_effect_when_the_current_lease_expires(
    rt: Runtime, lic: LicenseServerDouble, clock: Clock
) -> None:
    licensing.check_license(rt, "portal-a", clock.now, client=lic.client)
    licenses.issue(lic.admin, "portal-a", "business", 365)
    assert licensing.check_license(rt, "portal-a", clock.now, client=lic.client).state == "active"
    licenses.revoke(lic.admin, "portal-a")
    ent = licensing.check_license(rt, "portal-a", clock.advance(days=1), client=lic.client)
    assert ent.state == "active"  # the lease it holds still runs
    record = store.load_lease(rt, "portal-a")
    assert record is not None and record.denied == "license_revoked"
    ent = licensing.entitlements(rt, "portal-a", clock.advance(days=2))
    assert ent.state == "restricted" and "license_revoked" in ent.reason  # no grace for a revoked license


def test_an_ended_trial_is_restricted_at_its_end(rt: Runtime, lic: LicenseServerDouble, clock: Clock) -> None:
    licensing.check_license(rt, "portal-a", clock.now, client=lic.client)
    licensing.check_license(rt, "portal-a", clock.advance(days=13), client=lic.client)
    ent = licensing.check_license(rt, "portal-a", clock.advance(days=1), client=lic.client)
    assert ent.state == "restricted" and "license_expired" in ent.reason


def test_a_lease_from_a_server_with_another_key_is_refused_and_the_cache_kept(
    rt: Runtime, lic: LicenseServerDouble, clock: Clock
) -> None:
    licensing.check_license(rt, "portal-a", clock.now, client=lic.client)
    stranger = LicenseClient(
        "http://license.test", lic.backend_key, {"k1": generate_signing_key().public_key()}, http=lic.http
    )
    ent = licensing.check_license(rt, "portal-a", clock.now, client=stranger)
    assert ent.state == "trial"
    record = store.load_lease(rt, "portal-a")
    assert record is not None and "cannot be trusted" in (record.last_error or "")


def test_a_wrong_backend_key_is_a_failed_check_not_a_stop(rt: Runtime, lic: LicenseServerDouble, clock: Clock) -> None:
    bad = LicenseClient("http://license.test", "plk_" + "x" * 43, lic.client.public_keys, http=lic.http)
    ent = licensing.check_license(rt, "portal-a", clock.now, client=bad)
    assert ent.state == "restricted" and "unauthenticated" in ent.reason


def test_unconfigured_licensing_is_recorded_not_raised(rt: Runtime, clock: Clock) -> None:
    ent = licensing.check_license(rt, "portal-a", clock.now)
    assert ent.state == "restricted" and "LICENSE_SERVER_URL" in ent.reason


def test_refresh_checks_only_the_tenants_that_are_due(rt: Runtime, lic: LicenseServerDouble, clock: Clock) -> None:
    for tenant in ("portal-a", "portal-b"):
        licensing.check_license(rt, tenant, clock.now, client=lic.client)
    clock.advance(hours=1)
    licensing.check_license(rt, "portal-b", clock.now, client=lic.client)
    assert licensing.refresh_due(rt, clock.advance(days=1, hours=10), client=lic.client).checked == []
    report = licensing.refresh_due(rt, clock.advance(hours=1), client=lic.client)
    assert report.checked == ["portal-a"] and report.failed == []
    record = store.load_lease(rt, "portal-a")
    assert record is not None and record.leased_at == clock.now


def test_the_schedule_runs_the_refresh(
    rt: Runtime, lic: LicenseServerDouble, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Runtime, datetime]] = []
    monkeypatch.setattr(licensing, "refresh_due", lambda runtime, now: calls.append((runtime, now)))
    with Client(cloud.app.app, stage_name="dev", project_dir=PROJECT_DIR) as client:
        client.lambda_.invoke(
            "refresh_licenses",
            client.events.generate_cw_event(
                source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]
            ),
        )
    assert calls and calls[0][0] is rt


def test_cards_stay_with_the_first_users_seen(rt: Runtime, lic: LicenseServerDouble, clock: Clock) -> None:
    licensing.check_license(rt, "portal-a", clock.now, client=lic.client)
    licenses.change_plan(lic.admin, "portal-a", "start", users_with_cards=2)
    licensing.check_license(rt, "portal-a", clock.now, client=lic.client)
    assert licensing.users_keeping_cards(rt, "portal-a", ["10", "20"], clock.now) == ["10", "20"]
    assert licensing.users_keeping_cards(rt, "portal-a", ["30", "20", "10"], clock.now) == ["20", "10"]
    assert licensing.users_keeping_cards(rt, "portal-a", ["30"], clock.now) == []
    assert licensing.card_users(rt, "portal-a") == ["10", "20", "30"]
    assert licensing.users_keeping_cards(rt, "portal-b", ["30"], clock.now) == ["30"]  # its own list (free: 2)
    licensing.forget_card_user(rt, "portal-a", "10")
    assert licensing.users_keeping_cards(rt, "portal-a", ["30", "10"], clock.now) == ["30"]  # 30 moved up; 10 is last
    assert licensing.card_users(rt, "portal-a") == ["20", "30", "10"]


def test_the_lease_item_is_keyed_by_tenant(rt: Runtime, lic: LicenseServerDouble, clock: Clock) -> None:
    licensing.check_license(rt, "portal-a", clock.now, client=lic.client)
    items = rt.dynamodb.scan(TableName=rt.tables.licensing)["Items"]
    assert [(item["tenant"]["S"], item["item"]["S"]) for item in items] == [("portal-a", "lease")]
    assert lic.backend_key not in json.dumps(items)
