"""Builders for the settings pages' tests (fixtures are in ``webapp_testkit``): the two emulator portals and the
requests Bitrix24 and the page make."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from cloud.runtime import Runtime
from cloud.tenants import store
from cloud.tenants.store import Install, OAuthTokens
from sandbox.bitrix24 import Emulator

CLIENT_ID = "local.pbxlink.web"
SECRET = "web-secret"
AGENT_WS_URL = "wss://ws.example.test/api"
OLGA, ANNA, BORIS = 1, 11, 12


@dataclass
class Portals:
    emulator: Emulator
    url: str
    members: dict[str, str] = field(default_factory=dict)  # "acme" -> member id

    def domain(self, name: str) -> str:
        return f"{name}.bitrix24.com"

    def member(self, name: str) -> str:
        return self.members[name]

    def token(self, name: str, user_id: int) -> str:
        return str(self.emulator.issue(self.domain(name), CLIENT_ID, user_id)["access_token"])

    def headers(
        self, name: str, user_id: int, *, token: str | None = None, member: str | None = None
    ) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token or self.token(name, user_id)}",
            "X-B24-Member-Id": member or self.member(name),
            "Content-Type": "application/json",
        }

    def page_form(self, name: str, user_id: int, *, token: str | None = None) -> str:
        """The form Bitrix24 posts into its iframe when a user opens the app (protocols.md §A2.1)."""
        return urlencode(
            {
                "AUTH_ID": token or self.token(name, user_id),
                "AUTH_EXPIRES": "3600",
                "REFRESH_ID": "not-used-by-the-page",
                "SERVER_ENDPOINT": "https://oauth.bitrix.info/rest/",
                "member_id": self.member(name),
                "status": "L",
                "PLACEMENT": "DEFAULT",
                "PLACEMENT_OPTIONS": "{}",
            }
        )


def install(emulator: Emulator, rt: Runtime, domain: str) -> str:
    """Install the app on ``domain`` and store the tenant as ``/b24/install`` would (its tokens verified there)."""
    inst, tokens = emulator.install(domain, CLIENT_ID)
    store.save_install(
        rt,
        Install(
            tenant=tokens["member_id"],
            domain=domain,
            client_endpoint=tokens["client_endpoint"],
            application_token=inst.application_token,
            tokens=OAuthTokens(
                access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"],
                access_expires_at=int(tokens["expires"]),
            ),
        ),
    )
    return str(tokens["member_id"])


def body(response: Any) -> Any:
    return json.loads(response.body)
