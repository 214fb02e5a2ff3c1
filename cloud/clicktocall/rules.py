"""Click-to-call decisions without I/O: what a Bitrix24 event asks for, whether the number may be dialed, which
agent places the call, which extension rings, and how a refusal is told to the user.

Everything here is a pure function of the event, the tenant's settings, its directory and its agents, so the
rules are tested as tables; :mod:`cloud.clicktocall.handlers` does the reading, writing and sending.
"""

# ruff: noqa: RUF001 - the Russian reasons are Cyrillic on purpose

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud.crm.directory import Directory
from cloud.crm.numbers import COUNTRIES, PhoneNumber, normalize
from cloud.crm.settings import CrmSettings
from wire_protocol.messages import AgentSettings

__all__ = [
    "AgentChoice",
    "AgentView",
    "CallbackEvent",
    "ClickEvent",
    "FailureKind",
    "Refusal",
    "agent_settings",
    "callback_command_id",
    "check_number",
    "choose_agent",
    "click_command_id",
    "dial_string",
    "extension_of",
    "pattern_matches",
    "refusal",
    "refusal_for_result",
]

#: Why a click-to-call or callback was not placed, or failed on the PBX.
FailureKind = Literal[
    "disabled",
    "not_licensed",
    "invalid_number",
    "not_allowed",
    "no_extension",
    "no_callback_extension",
    "no_agent",
    "agent_offline",
    "rate_limited_user",
    "rate_limited_tenant",
    "pbx_busy",
    "pbx_no_answer",
    "pbx_declined",
    "pbx_refused",
    "pbx_unavailable",
    "pbx_failed",
    "interrupted",
]

_CALL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")
_SAFE_TEXT = re.compile(r"[\x00-\x1f\x7f]")


class ClickEvent(BaseModel):
    """``ONEXTERNALCALLSTART`` data (protocols.md §A7.8): Bitrix24 already registered ``CALL_ID``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    CALL_ID: str = Field(min_length=1, max_length=200)
    USER_ID: int = Field(gt=0)
    PHONE_NUMBER: str = Field(default="", max_length=64)
    PHONE_NUMBER_INTERNATIONAL: str = Field(default="", max_length=64)
    LINE_NUMBER: str = Field(default="", max_length=64)

    @property
    def number(self) -> str:
        return self.PHONE_NUMBER_INTERNATIONAL or self.PHONE_NUMBER

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> ClickEvent | None:
        try:
            return cls.model_validate(dict(data))
        except ValidationError:
            return None


class CallbackEvent(BaseModel):
    """``ONEXTERNALCALLBACKSTART`` data (protocols.md §A7.9): no CALL_ID, the integration registers the call."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    PHONE_NUMBER: str = Field(min_length=1, max_length=64)
    LINE_NUMBER: str = Field(default="", max_length=64)
    CRM_ENTITY_TYPE: str = Field(default="", max_length=20)
    CRM_ENTITY_ID: str = Field(default="", max_length=20)
    TEXT: str = Field(default="", max_length=2000)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> CallbackEvent | None:
        try:
            return cls.model_validate(dict(data))
        except ValidationError:
            return None

    def crm_entity(self) -> tuple[str, int] | None:
        kind = self.CRM_ENTITY_TYPE.upper()
        if kind in ("CONTACT", "COMPANY", "LEAD") and self.CRM_ENTITY_ID.isdigit() and int(self.CRM_ENTITY_ID) > 0:
            return kind, int(self.CRM_ENTITY_ID)
        return None


def click_command_id(call_id: str) -> str:
    """The command a click becomes, derived from its CALL_ID: every delivery of one click names the same
    command, which the agent runs at most once."""
    if _CALL_ID.match(call_id):
        return f"c2c:{call_id}"
    return "c2c:h" + hashlib.sha256(call_id.encode("utf-8")).hexdigest()[:40]


def callback_command_id(tenant: str, event_handler_id: str, ts: str, event: CallbackEvent) -> str:
    """A callback has no CALL_ID; a repeated delivery carries the same handler id, timestamp and fields."""
    text = "|".join((tenant, event_handler_id, ts, event.PHONE_NUMBER, event.LINE_NUMBER, event.TEXT))
    return "cb:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


# -- numbers --------------------------------------------------------------------------------------------------


def pattern_matches(pattern: str, e164: str) -> bool:
    """``+7XXXXXXXXXX`` (``X``: one digit), ``+49.`` (a final ``.``: any rest); spaces ignored, ``+`` optional.
    A pattern with other characters matches nothing (an admin's typo must not open every number)."""
    text = pattern.replace(" ", "").removeprefix("+")
    rest = text.endswith(".")
    body = text[:-1] if rest else text
    if not body or not re.fullmatch(r"[0-9Xx]+", body):
        return False
    regex = "".join(r"\d" if c in "Xx" else c for c in body) + (r"\d*" if rest else "")
    return re.fullmatch(regex, e164.removeprefix("+")) is not None


def _of_default_country(number: PhoneNumber, country: str) -> bool:
    rules = COUNTRIES.get(country)
    if rules is None:
        return False
    digits = number.value.removeprefix("+")
    if not digits.startswith(rules.calling_code):
        return False
    national = len(digits) - len(rules.calling_code)
    return rules.national_length is None or national == rules.national_length


def check_number(raw: str, settings: CrmSettings) -> PhoneNumber | FailureKind:
    """The number to dial (E.164), or why not: the toll-fraud guard. Only full international numbers are
    dialed (never short codes or guesses), and only those the tenant's patterns allow; no patterns: any number
    of the default country."""
    number = normalize(raw, settings.default_country)
    if number.kind != "e164":
        return "invalid_number"
    patterns = settings.click_to_call.allowed_patterns
    if patterns:
        allowed = any(pattern_matches(p, number.value) for p in patterns)
    else:
        allowed = _of_default_country(number, settings.default_country)
    return number if allowed else "not_allowed"


def dial_string(number: PhoneNumber) -> str:
    """What the agent dials (before its outside-line ``prefix``): the E.164 digits without ``+``, the form the
    lab's and most Asterisk outbound routes match (``_7XXXXXXXXXX``)."""
    return number.value.removeprefix("+")


# -- who and where -----------------------------------------------------------------------------------------------


def extension_of(user_id: int, directory: Directory, settings: CrmSettings) -> str | None:
    """The user's extension: the admin's overrides first, then ``UF_PHONE_INNER`` unless an override gives that
    extension to someone else (or to nobody)."""
    for extension, owner in sorted(settings.extension_overrides.items()):
        if owner == user_id:
            return extension
    user = directory.users.get(user_id)
    if user is None or not user.extension:
        return None
    if user.extension in settings.extension_overrides:
        return None
    return user.extension


@dataclass(frozen=True)
class AgentView:
    """What routing needs to know of one agent."""

    agent_id: str
    revoked: bool
    connected: bool


@dataclass(frozen=True)
class AgentChoice:
    agent_id: str | None
    failure: FailureKind | None = None


def choose_agent(settings: CrmSettings, line: str | None, agents: Iterable[AgentView]) -> AgentChoice:
    """The agent serving ``line``: the line's own, else the click-to-call default, else the tenant's only agent,
    else the only one connected (several connected and none configured: the first by id, for determinism)."""
    usable = {a.agent_id: a for a in agents if not a.revoked}
    configured = settings.line(line).agent_id or settings.click_to_call.default_agent_id
    if configured is not None:
        agent = usable.get(configured)
        if agent is None:
            return AgentChoice(None, "no_agent")
        return AgentChoice(agent.agent_id, None if agent.connected else "agent_offline")
    if not usable:
        return AgentChoice(None, "no_agent")
    if len(usable) == 1:
        (agent,) = usable.values()
        return AgentChoice(agent.agent_id, None if agent.connected else "agent_offline")
    connected = sorted(a.agent_id for a in usable.values() if a.connected)
    if not connected:
        return AgentChoice(min(usable), "agent_offline")
    return AgentChoice(connected[0])


def agent_settings(settings: CrmSettings) -> AgentSettings:
    """What agents get from the tenant's settings (after ``hello`` and on every change)."""
    return AgentSettings(originate=settings.click_to_call.originate, calls=settings.channel_rules)


# -- telling the user ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """How a failed click-to-call is finished: ``STATUS_CODE`` (protocols.md §A7.4) and ``FAILED_REASON``."""

    kind: FailureKind
    status_code: str
    reason: str


#: STATUS_CODE per failure: 403 forbidden, 404 invalid number, 480 temporarily unavailable, 486 busy,
#: 503 direction unavailable, 603 declined.
_STATUS: dict[FailureKind, str] = {
    "disabled": "403",
    "not_licensed": "403",
    "invalid_number": "404",
    "not_allowed": "403",
    "no_extension": "480",
    "no_callback_extension": "503",
    "no_agent": "503",
    "agent_offline": "503",
    "rate_limited_user": "480",
    "rate_limited_tenant": "480",
    "pbx_busy": "486",
    "pbx_no_answer": "480",
    "pbx_declined": "603",
    "pbx_refused": "503",
    "pbx_unavailable": "503",
    "pbx_failed": "503",
    "interrupted": "503",
}

_REASONS: dict[str, dict[FailureKind, str]] = {
    "en": {
        "disabled": "Click-to-call is turned off in the pbxlink settings.",
        "not_licensed": "Click-to-call is not included in your pbxlink plan (or the plan has ended).",
        "invalid_number": "This number cannot be dialed: it is not a complete phone number.",
        "not_allowed": "Calls to this number are not allowed by your administrator's dialing rules.",
        "no_extension": "Your profile has no internal phone number (extension): ask your administrator to set it.",
        "no_callback_extension": "No extension or queue is set for callbacks in the pbxlink settings.",
        "no_agent": "No phone system (pbxlink agent) is set up for this line.",
        "agent_offline": "The phone system is not connected to pbxlink right now.",
        "rate_limited_user": "Too many calls in a minute: please wait a moment and try again.",
        "rate_limited_tenant": "Your company placed too many calls in a minute: please try again shortly.",
        "pbx_busy": "Your phone was busy.",
        "pbx_no_answer": "Your phone did not answer.",
        "pbx_declined": "The call was declined on your phone.",
        "pbx_refused": "The phone system refused to place the call.",
        "pbx_unavailable": "The phone system could not be reached.",
        "pbx_failed": "The phone system could not ring your phone.",
        "interrupted": "pbxlink could not place the call: please try again.",
    },
    "ru": {
        "disabled": "Звонки из Битрикс24 выключены в настройках pbxlink.",
        "not_licensed": "Звонки из Битрикс24 не входят в ваш тариф pbxlink (или срок тарифа истёк).",
        "invalid_number": "Этот номер нельзя набрать: он неполный.",
        "not_allowed": "Звонки на этот номер запрещены правилами набора вашего администратора.",
        "no_extension": "В вашем профиле нет внутреннего номера: попросите администратора указать его.",
        "no_callback_extension": "В настройках pbxlink не указан номер или очередь для обратных звонков.",
        "no_agent": "Для этой линии не настроена АТС (агент pbxlink).",
        "agent_offline": "АТС сейчас не подключена к pbxlink.",
        "rate_limited_user": "Слишком много звонков за минуту: подождите немного и повторите.",
        "rate_limited_tenant": "Ваша компания сделала слишком много звонков за минуту: повторите чуть позже.",
        "pbx_busy": "Ваш телефон был занят.",
        "pbx_no_answer": "Ваш телефон не ответил.",
        "pbx_declined": "Звонок отклонён на вашем телефоне.",
        "pbx_refused": "АТС отказалась совершить звонок.",
        "pbx_unavailable": "Не удалось связаться с АТС.",
        "pbx_failed": "АТС не смогла вызвать ваш телефон.",
        "interrupted": "pbxlink не смог совершить звонок: попробуйте ещё раз.",
    },
}


def _language(language: str) -> str:
    code = language.lower()[:2]
    return code if code in _REASONS else "ru" if code in ("ua", "uk", "by", "kz") else "en"


def refusal(kind: FailureKind, language: str = "", detail: str = "") -> Refusal:
    """The finish for ``kind``, its reason in the portal's language (Russian or English); ``detail`` (a PBX's
    message) is appended, without control characters."""
    reason = _REASONS[_language(language)][kind]
    if detail:
        reason = f"{reason} ({_SAFE_TEXT.sub(' ', detail)[:200]})"
    return Refusal(kind, _STATUS[kind], reason)


#: The agent's ``command_result`` codes (docs/wire-protocol.md) → failure.
_RESULT_FAILURES: dict[str, FailureKind] = {
    "busy": "pbx_busy",
    "no_answer": "pbx_no_answer",
    "hung_up": "pbx_declined",
    "congestion": "pbx_unavailable",
    "rejected": "pbx_refused",
    "pbx_unavailable": "pbx_unavailable",
    "timeout": "pbx_unavailable",
    "unsupported": "pbx_refused",
    "failed": "pbx_failed",
    "unknown": "pbx_failed",
}


def refusal_for_result(code: str, message: str, language: str = "") -> Refusal | None:
    """The finish for a failed ``command_result``; ``None`` for ``duplicate`` (the id already ran: its own
    result is the one that counts)."""
    if code == "duplicate":
        return None
    kind = _RESULT_FAILURES.get(code, "pbx_failed")
    # only Asterisk's own refusal says something a user's admin can act on ("Permission denied")
    return refusal(kind, language, message if kind == "pbx_refused" else "")
