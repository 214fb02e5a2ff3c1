"""The HTTP side of a license check: one request to the license server, one verified lease back.

``httpx`` with an injectable client (tests hand in one bound to the license server app in-process, or to a
loopback server). The answer is trusted only if its signature verifies with a configured key and it echoes
this request's portal and nonce; otherwise :class:`LicenseCheckFailed`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from cloud.licensing.errors import LicenseCheckFailed, LicenseDenied, LicenseServerUnreachable
from license_protocol import CheckRequest, CheckResponse, ErrorResponse, Lease, LeaseError, Usage, verify_lease

__all__ = ["CHECK_PATH", "LicenseClient"]

CHECK_PATH = "/v1/check"
_RETRYABLE = {408, 429}


class LicenseClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        public_keys: Mapping[str, Ed25519PublicKey],
        *,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.public_keys = dict(public_keys)
        self._http = http
        self._timeout = timeout

    def __repr__(self) -> str:  # never the API key
        return f"LicenseClient({self.base_url!r}, kids={sorted(self.public_keys)})"

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        url = self.base_url + CHECK_PATH
        try:
            if self._http is not None:
                return self._http.post(url, json=body, headers=headers, timeout=self._timeout)
            with httpx.Client() as http:
                return http.post(url, json=body, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise LicenseServerUnreachable(f"license server {self.base_url}: {type(exc).__name__}: {exc}") from None

    def check(self, member_id: str, usage: Usage, now: datetime) -> tuple[str, Lease]:
        """Ask for ``member_id``'s lease; returns (token, verified lease) or raises a LicensingError."""
        request = CheckRequest(
            member_id=member_id, usage=usage, nonce=secrets.token_urlsafe(16), sent_at=int(now.timestamp())
        )
        response = self._post(request.model_dump())
        if response.status_code >= 500 or response.status_code in _RETRYABLE:
            raise LicenseServerUnreachable(f"license server {self.base_url} answered HTTP {response.status_code}")
        if response.status_code != 200:
            code, message = _error_of(response)
            if code in ("license_revoked", "license_expired"):
                raise LicenseDenied(code, message)
            raise LicenseCheckFailed(
                f"license server refused the check (HTTP {response.status_code}, {code}): {message}"
            )
        try:
            token = CheckResponse.model_validate_json(response.content).lease
        except ValidationError:
            raise LicenseCheckFailed("license server answered 200 without a lease") from None
        try:
            lease = verify_lease(token, self.public_keys)
        except LeaseError as exc:
            raise LicenseCheckFailed(f"license server sent a lease that cannot be trusted: {exc}") from None
        if lease.member_id != member_id or lease.nonce != request.nonce:
            raise LicenseCheckFailed("the lease does not answer this request (portal or nonce differ); not used")
        return token, lease


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = ErrorResponse.model_validate_json(response.content).error
    except ValidationError:
        return "unknown", response.text[:200]
    return error.code, error.message[:500]
