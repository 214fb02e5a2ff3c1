"""Refreshing a portal's tokens at Bitrix24's OAuth server (protocols.md §A3, DOC settings/oauth/index.md).

POSTed as a form so neither the client secret nor the refresh token ends up in a URL (access logs). Refresh
tokens rotate: the answer's pair replaces the old one, and the old refresh token is dead from now on.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud.bitrix24.errors import AuthorizationLost, PortalUnavailable
from cloud.settings import Settings
from cloud.tenants.store import OAuthTokens

__all__ = ["OAuthRefused", "TokenGrant", "refresh_tokens"]

log = logging.getLogger("cloud.bitrix24.oauth")


class OAuthRefused(AuthorizationLost):
    """The OAuth server refused the refresh (``code``: ``invalid_grant`` = refresh token dead or already used;
    ``invalid_client``/``wrong_client`` = our app credentials are wrong; ``PAYMENT_REQUIRED``)."""

    def __init__(self, tenant: str, code: str) -> None:
        self.code = code
        super().__init__(tenant, f"OAuth refresh refused: {code}")


class TokenGrant(BaseModel):
    """The OAuth server's answer; ``domain`` there is the OAuth server's, the portal is in ``client_endpoint``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    access_token: str = Field(repr=False, min_length=1)
    refresh_token: str = Field(repr=False, min_length=1)
    expires_in: int = 3600
    expires: int | None = None
    member_id: str = ""
    client_endpoint: str = ""
    server_endpoint: str = ""
    scope: str = ""
    status: str = ""

    def tokens(self, now: float) -> OAuthTokens:
        expires_at = self.expires if self.expires else int(now) + self.expires_in
        return OAuthTokens(
            access_token=self.access_token, refresh_token=self.refresh_token, access_expires_at=expires_at
        )


def refresh_tokens(http: httpx.Client, settings: Settings, tenant: str, refresh_token: str) -> TokenGrant:
    """Exchange ``refresh_token`` for a new pair. :class:`OAuthRefused` when the server says no,
    :class:`PortalUnavailable` when it cannot be reached (then the refresh may have happened: ``maybe_executed``)."""
    if not settings.b24_client_id or not settings.b24_client_secret:
        raise OAuthRefused(tenant, "B24_CLIENT_ID/B24_CLIENT_SECRET are not configured")
    form = {
        "grant_type": "refresh_token",
        "client_id": settings.b24_client_id,
        "client_secret": settings.b24_client_secret,
        "refresh_token": refresh_token,
    }
    try:
        response = http.post(settings.b24_oauth_url, data=form)
    except httpx.ConnectError as exc:
        raise PortalUnavailable(f"OAuth server: {type(exc).__name__}", maybe_executed=False, method="oauth") from None
    except httpx.TransportError as exc:
        raise PortalUnavailable(f"OAuth server: {type(exc).__name__}", maybe_executed=True, method="oauth") from None
    data: Any
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and data.get("error"):  # note: wrong_client comes with HTTP 200
        code = str(data["error"])
        log.warning("tenant %s: OAuth refresh refused: %s (HTTP %s)", tenant, code, response.status_code)
        if response.status_code >= 500:
            raise PortalUnavailable(f"OAuth server: {code}", maybe_executed=True, method="oauth")
        raise OAuthRefused(tenant, code)
    if response.status_code != 200 or not isinstance(data, dict):
        raise PortalUnavailable(f"OAuth server: HTTP {response.status_code}", maybe_executed=True, method="oauth")
    try:
        grant = TokenGrant.model_validate(data)
    except ValidationError:
        raise PortalUnavailable("OAuth server: an answer without tokens", maybe_executed=True, method="oauth") from None
    if grant.member_id and grant.member_id != tenant:
        raise OAuthRefused(tenant, "the OAuth server answered for another portal")
    return grant
