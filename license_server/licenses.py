"""Licenses per portal and the check that turns one into a signed lease.

The decisions (trial for a new portal, refusing revoked or ended licenses, the lease's times) are pure
functions of a :class:`License` and the clock; the functions taking a :class:`Runtime` store and sign.

A portal becomes known by its first check through an authenticated backend, which starts its trial; the
server signs only leases answering such a check (fresh ``sent_at``, unused nonce), echoing the nonce.
Revocation stops new leases; the cloud keeps the lease it has until it expires (the lease TTL).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from license_protocol import MEMBER_ID_PATTERN, CheckRequest, Feature, Lease, Limits, Usage, sign_lease
from license_server.api_keys import ApiKey
from license_server.dynamo import from_item, is_condition_failure, to_item
from license_server.errors import (
    BadRequest,
    LicenseExpired,
    LicenseNotFound,
    LicenseRevoked,
    Replayed,
    StaleRequest,
)
from license_server.plans import PLANS, TRIAL_PLAN, Plan
from license_server.runtime import Runtime
from license_server.settings import Settings

__all__ = [
    "License",
    "change_plan",
    "check",
    "extend",
    "get_license",
    "issue",
    "lease_for",
    "list_licenses",
    "new_trial",
    "parse_check_request",
    "revoke",
]


class License(BaseModel):
    model_config = ConfigDict(extra="ignore")

    member_id: str = Field(pattern=MEMBER_ID_PATTERN)
    plan: str
    features: tuple[Feature, ...]
    limits: Limits
    #: Epoch seconds; the license ends then (no lease reaches past it).
    valid_until: int
    trial: bool
    status: Literal["active", "revoked"] = "active"
    created_at: int
    revoked_at: int | None = None
    last_check_at: int | None = None
    usage: Usage | None = None
    #: The key id of the backend that checked last.
    checked_by: str | None = None


def _ts(now: datetime) -> int:
    return int(now.timestamp())


def _plan(name: str) -> Plan:
    if name not in PLANS:
        raise BadRequest(f"unknown plan {name!r}; plans: {', '.join(PLANS)}")
    return PLANS[name]


def new_trial(member_id: str, now: datetime, trial_days: int) -> License:
    plan = PLANS[TRIAL_PLAN]
    return License(
        member_id=member_id,
        plan=plan.name,
        features=tuple(sorted(plan.features)),
        limits=plan.limits,
        valid_until=_ts(now + timedelta(days=trial_days)),
        trial=True,
        created_at=_ts(now),
    )


def parse_check_request(body: Any) -> CheckRequest:
    try:
        return CheckRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise BadRequest(f"check request: {where}: {first['msg']}") from None


def check_freshness(request: CheckRequest, now: datetime, window_s: int) -> None:
    skew = request.sent_at - _ts(now)
    if abs(skew) > window_s:
        raise StaleRequest(
            f"sent_at is {skew:+d} s from the server's clock (allowed ±{window_s} s): check the backend's clock "
            "and send a fresh request"
        )


def lease_for(lic: License, request: CheckRequest, kid: str, now: datetime, settings: Settings) -> Lease:
    """The lease answering ``request``, or :class:`LicenseRevoked`/:class:`LicenseExpired`."""
    if lic.status == "revoked":
        raise LicenseRevoked(f"the license of portal {lic.member_id} was revoked; contact the vendor")
    iat = _ts(now)
    if lic.valid_until <= iat:
        what = "trial" if lic.trial else "license"
        raise LicenseExpired(f"the {what} of portal {lic.member_id} ended; contact the vendor to extend it")
    return Lease(
        kid=kid,
        member_id=lic.member_id,
        plan=lic.plan,
        trial=lic.trial,
        features=lic.features,
        limits=lic.limits,
        iat=iat,
        exp=min(iat + settings.lease_ttl_s, lic.valid_until),
        license_until=lic.valid_until,
        grace=settings.grace_s,
        nonce=request.nonce,
    )


# -- storage ----------------------------------------------------------------------------------------------------


def _to_item(lic: License) -> dict[str, Any]:
    return to_item(lic.model_dump(mode="json"))


def _load(item: dict[str, Any]) -> License:
    return License.model_validate(from_item(item))


def get_license(rt: Runtime, member_id: str) -> License:
    item = rt.dynamodb.get_item(
        TableName=rt.tables.licenses, Key={"member_id": {"S": member_id}}, ConsistentRead=True
    ).get("Item")
    if item is None:
        raise LicenseNotFound(f"no license for portal {member_id[:64]!r}")
    return _load(item)


def list_licenses(rt: Runtime) -> Iterator[License]:
    for page in rt.dynamodb.get_paginator("scan").paginate(TableName=rt.tables.licenses):
        for item in page["Items"]:
            yield _load(item)


def _put(rt: Runtime, lic: License, *, new: bool = False) -> License:
    kwargs: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(member_id)"} if new else {}
    rt.dynamodb.put_item(TableName=rt.tables.licenses, Item=_to_item(lic), **kwargs)
    return lic


def _claim_nonce(rt: Runtime, request: CheckRequest, now: datetime) -> None:
    try:
        rt.dynamodb.put_item(
            TableName=rt.tables.nonces,
            Item=to_item(
                {
                    "pk": f"{request.member_id}#{request.nonce}",
                    "expires_at": _ts(now) + 2 * rt.settings.replay_window_s,
                }
            ),
            ConditionExpression="attribute_not_exists(pk)",
        )
    except Exception as exc:
        if is_condition_failure(exc):
            raise Replayed(
                "this nonce was already used for this portal: send a new request with a fresh nonce"
            ) from None
        raise


def _known_or_trial(rt: Runtime, member_id: str, now: datetime) -> License:
    try:
        return get_license(rt, member_id)
    except LicenseNotFound:
        pass
    try:
        return _put(rt, new_trial(member_id, now, rt.settings.trial_days), new=True)
    except Exception as exc:
        if is_condition_failure(exc):  # a concurrent first check created it
            return get_license(rt, member_id)
        raise


def check(rt: Runtime, backend: ApiKey, body: Any) -> str:
    """Answer a backend's check request with a signed lease token (the portal's trial starts on its first)."""
    now = rt.clock()
    request = parse_check_request(body)
    check_freshness(request, now, rt.settings.replay_window_s)
    kid, key = rt.signing_key  # a misconfigured server fails before it remembers anything
    _claim_nonce(rt, request, now)
    lic = _known_or_trial(rt, request.member_id, now)
    rt.dynamodb.update_item(
        TableName=rt.tables.licenses,
        Key={"member_id": {"S": lic.member_id}},
        UpdateExpression="SET last_check_at = :at, #usage = :usage, checked_by = :by",
        ExpressionAttributeNames={"#usage": "usage"},
        ExpressionAttributeValues=to_item(
            {":at": _ts(now), ":usage": request.usage.model_dump(), ":by": backend.key_id}
        ),
    )
    return sign_lease(lease_for(lic, request, kid, now, rt.settings), key)


# -- the vendor's operations (admin API and license-admin) ---------------------------------------------------


def _validate_member(member_id: str) -> str:
    try:
        return CheckRequest.model_validate({"member_id": member_id, "nonce": "x" * 22, "sent_at": 0}).member_id
    except ValidationError:
        raise BadRequest(f"portal id {member_id[:64]!r}: letters, digits, '_', '-', '.' (1 to 64)") from None


def _limits(base: Limits, users_with_cards: int | None, agents: int | None) -> Limits:
    update = {"users_with_cards": users_with_cards, "agents": agents}
    return base.model_copy(update={key: value for key, value in update.items() if value is not None})


def issue(
    rt: Runtime,
    member_id: str,
    plan: str,
    days: int,
    *,
    users_with_cards: int | None = None,
    agents: int | None = None,
) -> License:
    """A paid license on ``plan`` for ``days`` from now; replaces a trial (or any earlier license) and
    un-revokes. Limits default to the plan's."""
    now = rt.clock()
    member_id = _validate_member(member_id)
    chosen = _plan(plan)
    if days <= 0:
        raise BadRequest("days must be positive")
    try:
        kept = get_license(rt, member_id).model_dump(include={"created_at", "last_check_at", "usage", "checked_by"})
    except LicenseNotFound:
        kept = {"created_at": _ts(now)}
    lic = License(
        **kept,
        member_id=member_id,
        plan=chosen.name,
        features=tuple(sorted(chosen.features)),
        limits=_limits(chosen.limits, users_with_cards, agents),
        valid_until=_ts(now + timedelta(days=days)),
        trial=chosen.name == TRIAL_PLAN,
    )
    return _put(rt, lic)


def extend(rt: Runtime, member_id: str, days: int) -> License:
    """``days`` more, counted from the later of now and the current end."""
    if days <= 0:
        raise BadRequest("days must be positive")
    lic = get_license(rt, member_id)
    start = max(lic.valid_until, _ts(rt.clock()))
    return _put(rt, lic.model_copy(update={"valid_until": start + days * 86_400}))


def change_plan(
    rt: Runtime, member_id: str, plan: str, *, users_with_cards: int | None = None, agents: int | None = None
) -> License:
    """Move to ``plan`` (its features and limits, optionally other limits), keeping the end date."""
    chosen = _plan(plan)
    lic = get_license(rt, member_id)
    update = {
        "plan": chosen.name,
        "features": tuple(sorted(chosen.features)),
        "limits": _limits(chosen.limits, users_with_cards, agents),
        "trial": chosen.name == TRIAL_PLAN,
    }
    return _put(rt, lic.model_copy(update=update))


def revoke(rt: Runtime, member_id: str) -> License:
    """No new lease for this portal; the lease it holds runs out at its ``exp``."""
    lic = get_license(rt, member_id)
    if lic.status == "revoked":
        return lic
    return _put(rt, lic.model_copy(update={"status": "revoked", "revoked_at": _ts(rt.clock())}))
