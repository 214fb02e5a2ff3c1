"""The tenant's CRM settings: one pydantic schema, stored per tenant, with defaults that work on install.

An admin changes them on the settings page; the CRM logic reads them for every call. Unknown keys are refused
(a typo must not silently do nothing) and every value is checked, so a stored document always validates; a
document written by an older version gains the new fields' defaults.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cloud.clock import now_iso
from cloud.crm.numbers import COUNTRIES
from cloud.errors import CloudError
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, to_item
from wire_protocol.channel_rules import ChannelRules
from wire_protocol.messages import OriginateSettings

__all__ = [
    "CardMode",
    "ClickToCallSettings",
    "ClientCreation",
    "CrmSettings",
    "InvalidSettings",
    "LineSettings",
    "MissedOwnerRule",
    "RecordingSettings",
    "load_settings",
    "save_settings",
]

#: When a user's phone rings, the call card opens: ``ring`` at once, ``answer`` only once they answered.
CardMode = Literal["ring", "answer", "never"]
#: Who owns a missed call: the client's responsible manager, the last user whose phone rang, the default user.
MissedOwnerRule = Literal["responsible", "last_rang", "default"]
#: When an unknown number becomes a lead or contact.
ClientCreation = Literal["never", "on_missed", "always"]


_DEFAULT_MISSED_OWNER: tuple[MissedOwnerRule, ...] = ("responsible", "last_rang", "default")


class InvalidSettings(CloudError):
    """Settings that do not validate; the message lists each field and what is wrong with it."""


class LineSettings(BaseModel):
    """One company number (the ``line`` of a call: the number the client dialed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", max_length=100)
    #: Owns this line's calls nobody else can own (before the tenant's default user).
    default_owner: int | None = None
    #: CRM source (``crm.status.list`` SOURCE status id) of leads from this line.
    lead_source: str | None = Field(default=None, max_length=50)
    #: The agent (PBX) that places click-to-calls on this line; None: the tenant's default agent.
    agent_id: str | None = None


class ClickToCallSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    #: Numbers that may be dialed (toll-fraud guard): ``+7XXXXXXXXXX``, ``+49.`` (``X`` one digit, a final ``.``
    #: any rest). Empty: any number of the default country.
    allowed_patterns: list[str] = Field(default_factory=list)
    #: How the agent places the call (context, channel, outside-line prefix); sent to agents in ``settings``.
    originate: OriginateSettings = Field(default_factory=OriginateSettings)
    caller_id: str | None = Field(default=None, max_length=80)
    per_user_per_minute: int = Field(default=6, ge=1, le=600)
    per_tenant_per_minute: int = Field(default=120, ge=1, le=6000)
    #: The extension or queue a CRM form's callback rings first (``ONEXTERNALCALLBACKSTART``).
    callback_from: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.+*#-]{1,32}$")
    #: The agent for click-to-calls on lines that name none; None: the tenant's only (or first) agent.
    default_agent_id: str | None = None


class RecordingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    format: Literal["mp3", "wav"] = "mp3"  # Bitrix24's player wants MP3
    retention_days: int = Field(default=90, ge=1, le=3650)


class CrmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    #: National number forms (``8 926 …``) are read in this country (ISO 3166 alpha-2).
    default_country: str = "RU"
    card_mode: CardMode = "ring"
    #: Per Bitrix24 user id: overrides ``card_mode``.
    card_mode_by_user: dict[int, CardMode] = Field(default_factory=dict)
    #: Who gets calls no mapped user can own (an extension with no Bitrix24 user, an IVR abandon); ``None``:
    #: the portal's first administrator.
    default_user_id: int | None = None
    missed_owner: list[MissedOwnerRule] = Field(default_factory=lambda: list(_DEFAULT_MISSED_OWNER))
    #: A follow-up task for the owner of every missed inbound call (``tasks.task.add``, linked to the client).
    missed_call_task: bool = False
    missed_task_title: str = Field(default="Missed call: {number}", min_length=1, max_length=200)
    missed_task_deadline_minutes: int = Field(default=60, ge=1, le=60 * 24 * 14)
    create_client: ClientCreation = "always"
    client_kind: Literal["lead", "contact"] = "lead"
    #: Company numbers by the number the client dialed (a call's ``line``).
    lines: dict[str, LineSettings] = Field(default_factory=dict)
    default_lead_source: str = "CALL"
    register_outbound: bool = True
    register_internal: bool = False
    #: Extension → Bitrix24 user id, over what the users' ``UF_PHONE_INNER`` says; ``None`` = no user.
    extension_overrides: dict[str, int | None] = Field(default_factory=dict)
    #: What a hidden caller's number is registered as (Bitrix24 needs digits).
    anonymous_number: str = Field(default="0", pattern=r"^[0-9]{1,20}$")
    #: Post the "call finished" message to the user's chat (``ADD_TO_CHAT``).
    add_to_chat: bool = True
    click_to_call: ClickToCallSettings = Field(default_factory=ClickToCallSettings)
    recordings: RecordingSettings = Field(default_factory=RecordingSettings)
    #: Which endpoints are extensions and which are trunks, for every agent; None: each agent's own config.
    channel_rules: ChannelRules | None = None

    @field_validator("default_country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        value = value.upper()
        if value not in COUNTRIES:
            raise ValueError(f"unsupported country {value!r}; supported: {', '.join(sorted(COUNTRIES))}")
        return value

    @field_validator("missed_owner")
    @classmethod
    def _owner_rules(cls, value: list[MissedOwnerRule]) -> list[MissedOwnerRule]:
        if not value or len(set(value)) != len(value):
            raise ValueError("list each rule at most once, at least one")
        return value

    @field_validator("extension_overrides")
    @classmethod
    def _extensions(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        for extension in value:
            if not extension or len(extension) > 40 or not extension.isprintable():
                raise ValueError(f"bad extension {extension!r}")
        return value

    def card_mode_of(self, user_id: int) -> CardMode:
        return self.card_mode_by_user.get(user_id, self.card_mode)

    def line(self, number: str | None) -> LineSettings:
        return self.lines.get(number or "") or LineSettings()

    def lead_source(self, line: str | None) -> str:
        return self.line(line).lead_source or self.default_lead_source

    @classmethod
    def parse(cls, document: dict[str, Any]) -> CrmSettings:
        """Validate a document from an admin or from storage; :class:`InvalidSettings` names every problem."""
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}" for error in exc.errors()
            )
            raise InvalidSettings(f"settings not saved: {problems}") from None


def load_settings(rt: Runtime, tenant: str) -> CrmSettings:
    """The tenant's settings; the defaults when none were saved."""
    item = rt.dynamodb.get_item(TableName=rt.tables.settings, Key=to_item({"tenant": tenant})).get("Item")
    if item is None:
        return CrmSettings()
    return CrmSettings.parse(json.loads(from_item(item)["crm"]))


def save_settings(rt: Runtime, tenant: str, settings: CrmSettings, *, by_user: int | None = None) -> None:
    rt.dynamodb.put_item(
        TableName=rt.tables.settings,
        Item=to_item(
            {
                "tenant": tenant,
                "crm": settings.model_dump_json(),
                "updated_at": now_iso(),
                "updated_by": by_user,
            }
        ),
    )
