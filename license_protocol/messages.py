"""The check request and the server's answers, as they travel over HTTP (JSON bodies).

``POST /v1/check`` with ``Authorization: Bearer <backend API key>`` and a :class:`CheckRequest` →
200 :class:`CheckResponse`, or an :class:`ErrorResponse` whose ``code`` is one of :data:`ErrorCode`.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MEMBER_ID_PATTERN",
    "NONCE_PATTERN",
    "CheckRequest",
    "CheckResponse",
    "ErrorBody",
    "ErrorCode",
    "ErrorResponse",
    "Usage",
]

#: A portal's id in keys joined by '#' on both sides, so no '#'. Bitrix24 member ids are 32 hex digits.
MEMBER_ID_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,64}$"
#: At least 128 bits of randomness as url-safe base64 (``secrets.token_urlsafe(16)`` gives 22 characters).
NONCE_PATTERN: Final = r"^[A-Za-z0-9_-]{22,86}$"

ErrorCode = Literal[
    "bad_request",  # 400: the body does not fit the request model
    "unauthenticated",  # 401: no key, or a key the server does not know
    "forbidden",  # 403: a known key of the wrong kind (backend key on the admin API, or the reverse)
    "not_found",  # 404: no such license (admin API)
    "stale_request",  # 400: sent_at too far from the server's clock (replay window)
    "replayed",  # 409: this nonce was already used for this portal
    "license_revoked",  # 403: the vendor revoked the portal's license
    "license_expired",  # 403: the license ended (trial or paid period over)
    "internal",  # 500
]


class Usage(BaseModel):
    """What the portal uses now, reported with each check (shown to the vendor, not enforced by the server)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users_with_cards: int = Field(default=0, ge=0, le=1_000_000)
    agents: int = Field(default=0, ge=0, le=10_000)


class CheckRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: str = Field(pattern=MEMBER_ID_PATTERN)
    usage: Usage = Usage()
    #: Fresh per request; the server refuses a nonce it has seen for this portal, and the lease echoes it.
    nonce: str = Field(pattern=NONCE_PATTERN)
    #: The sender's clock, epoch seconds; the server refuses requests outside its replay window.
    sent_at: int = Field(ge=0)


class CheckResponse(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lease: str = Field(min_length=1, max_length=8192)


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
