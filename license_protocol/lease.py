"""The lease: what a portal may use until when, signed by the license server, verified by the cloud.

Token = ``base64url(body) "." base64url(signature)`` (no padding), where ``body`` is the lease as canonical
JSON (sorted keys, no spaces, UTF-8) and the Ed25519 signature covers ``b"pbxlink-lease/" + body``, so a
signature made for anything else can never pass as a lease. ``v`` versions the format: a verifier refuses a
version it does not know instead of guessing. Times are integer seconds since the epoch (UTC).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from license_protocol.errors import BadSignature, MalformedLease, UnknownKeyId, UnsupportedLeaseVersion
from license_protocol.keys import KID_PATTERN
from license_protocol.messages import MEMBER_ID_PATTERN, NONCE_PATTERN

__all__ = [
    "ALL_FEATURES",
    "LEASE_VERSION",
    "SIGNING_CONTEXT",
    "Feature",
    "Lease",
    "Limits",
    "sign_lease",
    "verify_lease",
]

LEASE_VERSION: Final = 1
SIGNING_CONTEXT: Final = b"pbxlink-lease/"

Feature = Literal["calls_to_crm", "click_to_call", "recordings", "lead_creation", "responsible_routing", "multiple_pbx"]
ALL_FEATURES: Final[frozenset[Feature]] = frozenset(get_args(Feature))


class Limits(BaseModel):
    """Counts a plan allows; ``None`` = no limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users_with_cards: int | None = Field(default=None, ge=0)
    agents: int | None = Field(default=None, ge=0)


class Lease(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = LEASE_VERSION
    typ: Literal["lease"] = "lease"
    #: The signing key's id, so verifiers can hold several keys while one is rotated out.
    kid: str = Field(pattern=KID_PATTERN)
    #: The portal (Bitrix24 member_id = the cloud's tenant id).
    member_id: str = Field(pattern=MEMBER_ID_PATTERN)
    plan: str = Field(min_length=1, max_length=64)
    trial: bool
    features: tuple[Feature, ...]
    limits: Limits
    #: Issued at / expires at: the lease is good for ``iat <= now < exp``.
    iat: int = Field(ge=0)
    exp: int = Field(ge=0)
    #: When the license itself ends (the trial's or the paid period's end).
    license_until: int = Field(ge=0)
    #: Seconds past ``exp`` the cloud may keep using this lease while the server cannot be reached.
    grace: int = Field(ge=0)
    #: The check request's nonce, echoed: the cloud accepts only the answer to the request it sent.
    nonce: str = Field(pattern=NONCE_PATTERN)

    @field_validator("features")
    @classmethod
    def _sorted_unique(cls, features: tuple[Feature, ...]) -> tuple[Feature, ...]:
        return tuple(sorted(set(features)))

    @model_validator(mode="after")
    def _times_in_order(self) -> Lease:
        if self.exp <= self.iat:
            raise ValueError(f"exp ({self.exp}) must be after iat ({self.iat})")
        return self


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_body(lease: Lease) -> bytes:
    return json.dumps(lease.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def sign_lease(lease: Lease, key: Ed25519PrivateKey) -> str:
    body = canonical_body(lease)
    return f"{_b64(body)}.{_b64(key.sign(SIGNING_CONTEXT + body))}"


def verify_lease(token: str, public_keys: Mapping[str, Ed25519PublicKey]) -> Lease:
    """The lease in ``token`` once its signature verifies with the key its ``kid`` names; raises a
    :class:`~license_protocol.errors.LeaseError` otherwise (nothing unverified is ever returned)."""
    body_b64, sep, sig_b64 = token.partition(".")
    try:
        if not sep or "." in sig_b64:
            raise ValueError("expected two dot-separated parts")
        body, signature = _unb64(body_b64), _unb64(sig_b64)
        claims: Any = json.loads(body)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise MalformedLease(f"not a lease token ({str(exc)[:200]})") from None
    except RecursionError:  # JSON nested deeper than the interpreter's stack: no lease is
        raise MalformedLease("not a lease token (nested too deeply)") from None
    if not isinstance(claims, dict):
        raise MalformedLease("not a lease token (the body is not a JSON object)")
    if claims.get("v") != LEASE_VERSION:
        raise UnsupportedLeaseVersion(f"lease format version {claims.get('v')!r}; this code knows {LEASE_VERSION}")
    kid = claims.get("kid")
    key = public_keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        known = ", ".join(sorted(public_keys)) or "none"
        raise UnknownKeyId(f"lease signed with key id {str(kid)[:40]!r}; configured: {known} (LICENSE_PUBLIC_KEYS)")
    try:
        key.verify(signature, SIGNING_CONTEXT + body)
    except InvalidSignature:
        raise BadSignature(f"lease signature does not verify with key {kid!r}") from None
    try:
        return Lease.model_validate(claims)
    except ValidationError as exc:
        raise MalformedLease(f"signed lease does not fit the lease model: {exc.errors()[0]['msg']}") from None
