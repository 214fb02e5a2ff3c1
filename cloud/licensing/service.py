"""The licensing functions the rest of the cloud calls (I/O around the pure rules in ``entitlements``/``cards``).

* :func:`entitlements` — what a tenant may use now; reads the cached lease only, never calls the server.
* :func:`check_license` — ask the license server now (the install handler calls it; so does the schedule).
* :func:`refresh_due` — the schedule: re-check every tenant whose lease is half used or whose retry is due.
* :func:`users_keeping_cards` — which of the ringing users see a call card under the plan's limit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud.agents.tokens import list_agents
from cloud.licensing import store
from cloud.licensing.cards import keep_cards
from cloud.licensing.client import LicenseClient
from cloud.licensing.entitlements import (
    Entitlements,
    LeaseRecord,
    evaluate,
    next_check_after_denial,
    next_check_after_failure,
    next_check_after_success,
)
from cloud.licensing.errors import LicenseDenied, LicensingError, LicensingNotConfigured
from cloud.runtime import Runtime
from license_protocol import MalformedKey, Usage, parse_public_keys

__all__ = [
    "RefreshReport",
    "check_license",
    "entitlements",
    "license_client",
    "public_keys",
    "refresh_due",
    "usage",
    "users_keeping_cards",
]

log = logging.getLogger("cloud.licensing")


@lru_cache(maxsize=8)
def _parsed_keys(spec: str) -> dict[str, Ed25519PublicKey]:
    return parse_public_keys(spec)


def public_keys(rt: Runtime) -> dict[str, Ed25519PublicKey]:
    """The verifying keys from ``LICENSE_PUBLIC_KEYS``; raises :class:`LicensingNotConfigured` when malformed."""
    try:
        return _parsed_keys(rt.settings.license_public_keys)
    except MalformedKey as exc:
        raise LicensingNotConfigured(f"LICENSE_PUBLIC_KEYS: {exc}") from None


def license_client(rt: Runtime) -> LicenseClient:
    """A client from the settings; raises :class:`LicensingNotConfigured` naming what is missing."""
    settings = rt.settings
    missing = [
        name
        for name, value in (
            ("LICENSE_SERVER_URL", settings.license_server_url),
            ("LICENSE_API_KEY", settings.license_api_key),
            ("LICENSE_PUBLIC_KEYS", settings.license_public_keys),
        )
        if not value
    ]
    if missing:
        raise LicensingNotConfigured(f"licensing is not configured: set {', '.join(missing)}")
    assert settings.license_server_url and settings.license_api_key  # for mypy: checked just above
    return LicenseClient(settings.license_server_url, settings.license_api_key, public_keys(rt))


def entitlements(rt: Runtime, tenant: str, now: datetime) -> Entitlements:
    """What ``tenant`` may use at ``now``: the cached lease judged by the clock (no call to the server)."""
    record = store.load_lease(rt, tenant) or LeaseRecord(tenant=tenant)
    try:
        keys = public_keys(rt)
    except LicensingNotConfigured as exc:
        log.error("tenant %s: %s", tenant, exc)
        keys = {}
    return evaluate(record, keys, now)


def usage(rt: Runtime, tenant: str) -> Usage:
    """What the tenant uses, reported with each check: users ever given a card, agents not revoked."""
    agents = sum(1 for agent in list_agents(rt, tenant) if not agent.revoked)
    return Usage(users_with_cards=len(store.load_card_users(rt, tenant)), agents=agents)


def check_license(rt: Runtime, tenant: str, now: datetime, *, client: LicenseClient | None = None) -> Entitlements:
    """Ask the license server for ``tenant``'s lease now, cache the answer, return the entitlements.

    Call it on install (a new portal gets its trial on its first check) and whenever a lease should be renewed.
    Never raises for licensing trouble: a failure is recorded and the cached lease (then grace) applies.
    """
    record = store.load_lease(rt, tenant) or LeaseRecord(tenant=tenant)
    try:
        token, lease = (client or license_client(rt)).check(tenant, usage(rt, tenant), now)
    except LicenseDenied as exc:
        log.warning("tenant %s: license server refused a lease: %s (%s)", tenant, exc.code, exc)
        record = record.model_copy(
            update={
                "checked_at": now,
                "denied": exc.code,
                "denied_message": str(exc),
                "last_error": None,
                "next_check_at": next_check_after_denial(now),
            }
        )
    except LicensingError as exc:
        log.warning("tenant %s: license check failed: %s", tenant, exc)
        record = record.model_copy(
            update={"checked_at": now, "last_error": str(exc)[:500], "next_check_at": next_check_after_failure(now)}
        )
    else:
        record = LeaseRecord(
            tenant=tenant,
            token=token,
            checked_at=now,
            leased_at=now,
            next_check_at=next_check_after_success(lease),
        )
    store.save_lease(rt, record)
    return entitlements(rt, tenant, now)


@dataclass
class RefreshReport:
    checked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def refresh_due(rt: Runtime, now: datetime, *, client: LicenseClient | None = None) -> RefreshReport:
    """Re-check every tenant whose lease is due (half used, or a failed check's retry time reached)."""
    report = RefreshReport()
    try:
        client = client or license_client(rt)
    except LicensingNotConfigured as exc:
        log.error("license refresh skipped: %s", exc)
        return report
    for tenant in store.due_tenants(rt, now):
        try:
            check_license(rt, tenant, now, client=client)
            report.checked.append(tenant)
        except Exception:  # one tenant's storage trouble must not stop the others' renewals
            log.exception("license refresh of tenant %s failed", tenant)
            report.failed.append(tenant)
    return report


def users_keeping_cards(rt: Runtime, tenant: str, ringing: list[str], now: datetime) -> list[str]:
    """Of the Bitrix24 users a call rings (in order), those who may see its card now.

    Every ringing user is remembered in first-seen order, limit or not, so a later downgrade keeps the cards
    with the people who had them; with a limit N only the first N ever seen get cards.
    """
    seen = store.record_card_users(rt, tenant, [str(user) for user in ringing])
    return keep_cards(seen, [str(user) for user in ringing], entitlements(rt, tenant, now).limits.users_with_cards)
