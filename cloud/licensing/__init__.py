"""Licensing on the cloud's side: leases from the license server, cached per tenant, judged by the clock.

What the rest of the cloud calls (``docs/licensing.md``)::

    entitlements(rt, tenant, now) -> Entitlements          # features, limits, state; no server call
    check_license(rt, tenant, now, client=None) -> Entitlements   # on install, and to renew
    refresh_due(rt, now, client=None) -> RefreshReport     # the schedule (cloud.app)
    users_keeping_cards(rt, tenant, ringing, now) -> list[str]
    card_users(rt, tenant) / forget_card_user(rt, tenant, user_id)   # the settings page
"""

from cloud.licensing.entitlements import FREE_FEATURES, FREE_LIMITS, FREE_PLAN, Entitlements, LeaseRecord, State
from cloud.licensing.errors import (
    LicenseCheckFailed,
    LicenseDenied,
    LicenseServerUnreachable,
    LicensingError,
    LicensingNotConfigured,
)
from cloud.licensing.service import (
    RefreshReport,
    check_license,
    entitlements,
    license_client,
    refresh_due,
    users_keeping_cards,
)
from cloud.licensing.store import forget_card_user
from cloud.licensing.store import load_card_users as card_users
from license_protocol import Feature, Limits

__all__ = [
    "FREE_FEATURES",
    "FREE_LIMITS",
    "FREE_PLAN",
    "Entitlements",
    "Feature",
    "LeaseRecord",
    "LicenseCheckFailed",
    "LicenseDenied",
    "LicenseServerUnreachable",
    "LicensingError",
    "LicensingNotConfigured",
    "Limits",
    "RefreshReport",
    "State",
    "card_users",
    "check_license",
    "entitlements",
    "forget_card_user",
    "license_client",
    "on_install",
    "refresh_due",
    "users_keeping_cards",
]

#: What the Bitrix24 install handler calls: the first check starts a new portal's trial.
on_install = check_license
