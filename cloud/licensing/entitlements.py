"""What a tenant may use now, from its cached lease and the clock alone (sans-I/O: no DynamoDB, no HTTP).

Rules (``docs/licensing.md``):

* a verified lease with ``now < exp`` → ``trial`` or ``active``, the lease's features and limits;
* past ``exp``, when the license server's last answer was a denial (revoked or ended) → ``restricted``;
* past ``exp`` otherwise (the server could not be reached) → ``grace`` until ``exp + lease.grace``, same
  features; after that → ``restricted``;
* no lease, or one that does not verify → ``restricted``.

Restricted is the free tier: call cards for at most 2 users, no click-to-call, no recordings; calls still
reach the CRM and no PBX is disconnected (never a hard stop that loses calls).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict

from license_protocol import ALL_FEATURES, Feature, Lease, LeaseError, Limits, verify_lease

__all__ = [
    "DENIAL_RETRY",
    "FAILURE_RETRY",
    "FREE_FEATURES",
    "FREE_LIMITS",
    "FREE_PLAN",
    "Entitlements",
    "LeaseRecord",
    "State",
    "evaluate",
    "needs_check",
    "next_check_after_denial",
    "next_check_after_failure",
    "next_check_after_success",
]

State = Literal["trial", "active", "grace", "restricted"]

FREE_PLAN: Final = "free"
FREE_FEATURES: Final[frozenset[Feature]] = ALL_FEATURES - {"click_to_call", "recordings"}
FREE_LIMITS: Final = Limits(users_with_cards=2, agents=None)
#: How soon to ask again after a failed check (unreachable, refused) and after a denial.
FAILURE_RETRY: Final = timedelta(minutes=5)
DENIAL_RETRY: Final = timedelta(hours=1)


class LeaseRecord(BaseModel):
    """What the cloud keeps per tenant about its license (the ``licensing`` table's ``lease`` item)."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    #: The last lease token the server sent (verified when stored, verified again when read).
    token: str | None = None
    #: When the cloud last asked, and last got a lease.
    checked_at: datetime | None = None
    leased_at: datetime | None = None
    #: The server's last refusal (``license_revoked``/``license_expired``) and its message; cleared by a lease.
    denied: str | None = None
    denied_message: str | None = None
    #: The last failed check (unreachable, refused, invalid answer); cleared by a lease.
    last_error: str | None = None
    next_check_at: datetime | None = None


class Entitlements(BaseModel):
    """The one answer the rest of the cloud asks for: what this tenant may use now, and why."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    plan: str
    state: State
    features: frozenset[Feature]
    limits: Limits
    #: When the license (trial or paid period) ends, as the last lease said; None without a lease.
    ends_at: datetime | None = None
    lease_expires_at: datetime | None = None
    #: Until when the grace period runs (set in ``grace``, and in ``active``/``trial`` for information).
    grace_ends_at: datetime | None = None
    reason: str

    def allows(self, feature: Feature) -> bool:
        return feature in self.features

    @property
    def restricted(self) -> bool:
        return self.state == "restricted"


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _restricted(tenant: str, reason: str, lease: Lease | None = None) -> Entitlements:
    return Entitlements(
        tenant=tenant,
        plan=FREE_PLAN,
        state="restricted",
        features=FREE_FEATURES,
        limits=FREE_LIMITS,
        ends_at=_at(lease.license_until) if lease else None,
        lease_expires_at=_at(lease.exp) if lease else None,
        reason=reason + "; free tier: call cards for 2 users, no click-to-call, no recordings",
    )


def _never_leased(record: LeaseRecord | None) -> str:
    if record is None:
        return "the license was never checked"
    if record.denied:
        return f"the license server refused a lease ({record.denied}): {record.denied_message}"
    if record.last_error:
        return f"no lease yet: {record.last_error}"
    return "no lease yet"


def evaluate(record: LeaseRecord | None, public_keys: Mapping[str, Ed25519PublicKey], now: datetime) -> Entitlements:
    tenant = record.tenant if record else ""
    if record is None or record.token is None:
        return _restricted(tenant, _never_leased(record))
    try:
        lease = verify_lease(record.token, public_keys)
    except LeaseError as exc:
        return _restricted(tenant, f"the stored lease cannot be trusted ({type(exc).__name__}: {exc})")
    if lease.member_id != tenant:
        return _restricted(tenant, f"the stored lease is for portal {lease.member_id!r}, not this one")
    t = now.timestamp()
    grace_ends = _at(lease.exp + lease.grace)
    common = {
        "tenant": tenant,
        "plan": lease.plan,
        "features": frozenset(lease.features),
        "limits": lease.limits,
        "ends_at": _at(lease.license_until),
        "lease_expires_at": _at(lease.exp),
        "grace_ends_at": grace_ends,
    }
    if t < lease.exp:
        state: State = "trial" if lease.trial else "active"
        return Entitlements(state=state, reason=f"lease valid until {_at(lease.exp).isoformat()}", **common)
    # A lease clears the denial (see ``service.check_license``), so a denial here came after this lease. Not
    # compared with ``lease.iat``: that is the server's clock, and a skew of a second would turn it into grace.
    if record.denied:
        return _restricted(
            tenant, f"the lease expired and the license server refused a new one ({record.denied})", lease
        )
    if t < lease.exp + lease.grace:
        why = f": {record.last_error}" if record.last_error else ""
        return Entitlements(
            state="grace",
            reason=f"lease expired at {_at(lease.exp).isoformat()} and no new one came{why}; "
            f"grace until {grace_ends.isoformat()}",
            **common,
        )
    return _restricted(tenant, f"the lease expired and its grace period ended at {grace_ends.isoformat()}", lease)


# -- when to ask the license server again (pure; the results are stored as ``next_check_at``) --------------


def next_check_after_success(lease: Lease) -> datetime:
    """Half-way through the lease: a failed renewal leaves the other half (then the grace) to retry in."""
    return _at(lease.iat + (lease.exp - lease.iat) // 2)


def next_check_after_failure(now: datetime) -> datetime:
    return now + FAILURE_RETRY


def next_check_after_denial(now: datetime) -> datetime:
    return now + DENIAL_RETRY


def needs_check(record: LeaseRecord | None, now: datetime) -> bool:
    return record is None or record.next_check_at is None or record.next_check_at <= now
