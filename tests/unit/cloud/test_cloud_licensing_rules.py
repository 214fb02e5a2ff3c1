"""The pure rules: a cached lease and the clock → entitlements; who keeps cards; when to check again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from licensing_builders import PUBLIC_KEYS, SIGNING, START

from cloud.licensing.cards import MAX_REMEMBERED, keep_cards, remember
from cloud.licensing.entitlements import (
    FREE_FEATURES,
    LeaseRecord,
    evaluate,
    needs_check,
    next_check_after_failure,
    next_check_after_success,
)
from license_protocol import ALL_FEATURES, Lease, Limits, generate_signing_key, sign_lease

T0 = int(START.timestamp())
HOUR = 3_600
DAY = 86_400


def lease(**changes: object) -> Lease:
    values: dict[str, object] = {
        "kid": "k1",
        "member_id": "portal-a",
        "plan": "business",
        "trial": False,
        "features": tuple(sorted(ALL_FEATURES - {"multiple_pbx"})),
        "limits": Limits(users_with_cards=50, agents=1),
        "iat": T0,
        "exp": T0 + 3 * DAY,
        "license_until": T0 + 365 * DAY,
        "grace": 72 * HOUR,
        "nonce": "n" * 22,
    }
    values.update(changes)
    return Lease.model_validate(values)


def record(token: str | None = None, **changes: object) -> LeaseRecord:
    base = LeaseRecord(tenant="portal-a", token=token if token is not None else sign_lease(lease(), SIGNING))
    return base.model_copy(update=changes)


def test_a_valid_lease_gives_its_plan() -> None:
    ent = evaluate(record(), PUBLIC_KEYS, START + timedelta(days=1))
    assert (ent.state, ent.plan, ent.limits.users_with_cards) == ("active", "business", 50)
    assert ent.allows("recordings") and not ent.allows("multiple_pbx")
    assert ent.ends_at == START + timedelta(days=365) and ent.lease_expires_at == START + timedelta(days=3)


def test_a_trial_lease_is_in_the_trial_state() -> None:
    ent = evaluate(record(sign_lease(lease(trial=True, plan="trial"), SIGNING)), PUBLIC_KEYS, START)
    assert ent.state == "trial"


def test_server_unreachable_past_expiry_gives_grace_then_the_free_tier() -> None:
    unreachable = record(last_error="license server http://x: ConnectError")
    in_grace = evaluate(unreachable, PUBLIC_KEYS, START + timedelta(days=3, hours=71))
    assert in_grace.state == "grace" and in_grace.allows("recordings") and "ConnectError" in in_grace.reason
    assert in_grace.grace_ends_at == START + timedelta(days=3, hours=72)
    after = evaluate(unreachable, PUBLIC_KEYS, START + timedelta(days=3, hours=72))
    assert after.state == "restricted" and after.features == FREE_FEATURES
    assert not after.allows("click_to_call") and not after.allows("recordings") and after.allows("calls_to_crm")
    assert after.limits.users_with_cards == 2 and after.limits.agents is None  # no PBX is cut off
    assert "grace period ended" in after.reason


def test_a_revocation_takes_effect_when_the_lease_expires_without_grace() -> None:
    revoked = record(denied="license_revoked", denied_message="revoked", checked_at=START + timedelta(days=1))
    assert evaluate(revoked, PUBLIC_KEYS, START + timedelta(days=2)).state == "active"
    after = evaluate(revoked, PUBLIC_KEYS, START + timedelta(days=3))
    assert after.state == "restricted" and "license_revoked" in after.reason


def test_no_lease_is_the_free_tier_saying_why() -> None:
    assert evaluate(None, PUBLIC_KEYS, START).state == "restricted"
    never = evaluate(LeaseRecord(tenant="portal-a", last_error="licensing is not configured"), PUBLIC_KEYS, START)
    assert never.state == "restricted" and "not configured" in never.reason


def test_a_tampered_stored_lease_is_not_trusted() -> None:
    body, sig = sign_lease(lease(), SIGNING).split(".")
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + sig
    ent = evaluate(record(tampered), PUBLIC_KEYS, START)
    assert ent.state == "restricted" and "cannot be trusted" in ent.reason


def test_a_lease_signed_under_an_unconfigured_key_id_is_not_trusted() -> None:
    ent = evaluate(record(sign_lease(lease(kid="k2"), generate_signing_key())), PUBLIC_KEYS, START)
    assert ent.state == "restricted" and "UnknownKeyId" in ent.reason


def test_another_portals_lease_is_not_trusted() -> None:
    ent = evaluate(record(sign_lease(lease(member_id="portal-b"), SIGNING)), PUBLIC_KEYS, START)
    assert ent.state == "restricted" and "portal-b" in ent.reason


def test_checks_come_half_way_through_a_lease_and_soon_after_a_failure() -> None:
    assert next_check_after_success(lease()) == START + timedelta(days=1, hours=12)
    assert next_check_after_failure(START) == START + timedelta(minutes=5)
    assert needs_check(None, START)
    due = record(next_check_at=START)
    assert needs_check(due, START) and not needs_check(due, START - timedelta(seconds=1))


def test_remember_appends_new_users_once_in_order() -> None:
    assert remember(["7", "3"], ["3", "9", "1", "9"]) == ["7", "3", "9", "1"]
    assert len(remember([str(n) for n in range(MAX_REMEMBERED)], ["new"])) == MAX_REMEMBERED


@pytest.mark.parametrize(
    ("ringing", "limit", "kept"),
    [
        (["5", "1", "9"], None, ["5", "1", "9"]),
        (["9", "1", "5"], 2, ["1", "5"]),  # the first two ever seen, in the call's order
        (["9"], 2, []),
        (["5", "5"], 2, ["5"]),
        (["5"], 0, []),
    ],
)
def test_only_the_first_users_seen_keep_cards(ringing: list[str], limit: int | None, kept: list[str]) -> None:
    assert keep_cards(["5", "1", "9"], ringing, limit) == kept


def test_the_cloud_reads_its_licensing_settings_from_the_environment() -> None:
    from cloud.settings import Settings

    env = {
        "LICENSE_SERVER_URL": "https://license.example",
        "LICENSE_API_KEY": "plk_secret",
        "LICENSE_PUBLIC_KEYS": "k1:x",
    }
    settings = Settings.from_env(env)
    assert (settings.license_server_url, settings.license_api_key, settings.license_public_keys) == (
        "https://license.example",
        "plk_secret",
        "k1:x",
    )
    assert "plk_secret" not in repr(settings)
