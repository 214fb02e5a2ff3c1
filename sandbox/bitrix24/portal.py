"""One Bitrix24 portal (tenant): its users, CRM, telephony, event bindings and app options, with no I/O.

Every REST method the integration uses is a plain Python method here, reached through :meth:`Portal.call`.
The rules and result shapes come from the official REST docs (GitHub ``bitrix24/b24restdocs``); each
method's docstring names its page. Outgoing events are appended to :attr:`Portal.outbox`; the HTTP layer
delivers them. Recording downloads go through an injected ``fetch`` callable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import itertools
import re
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit

from sandbox.bitrix24.clock import Clock, LeakyBucket
from sandbox.bitrix24.errors import RestError, core_error

PAGE_SIZE = 50  # DOC api-reference/user/user-get.md, list-methods-pecularities.md
DEDUPE_WINDOW = 30 * 60  # DOC telephony/telephony-external-call-register.md: "within 30 minutes"
CALL_TYPES = {1, 2, 3, 4, 5}  # DOC telephony/codes-and-types.md (5 = informational, newer docs)
# DOC telephony-external-call-finish.md; anything else is accepted and reported by Portal.audit().
STATUS_CODES = {"200", "304", "603", "603-S", "403", "404", "486", "484", "503", "480", "402", "423", "OTHER"}
KNOWN_EVENTS = {
    "ONAPPINSTALL",
    "ONAPPUNINSTALL",
    "ONAPPUPDATE",
    "ONEXTERNALCALLSTART",
    "ONEXTERNALCALLBACKSTART",
    "ONCRMLEADADD",
    "ONCRMCONTACTADD",
    "ONCRMCOMPANYADD",
    "ONOFFLINEEVENT",
    "ONVOXIMPLANTCALLEND",
}
# Methods a webhook may not call: "works only in the context of an application" (DOC telephony pages, event-bind.md).
APP_ONLY = {
    "telephony.externalline.add",
    "telephony.externalline.update",
    "telephony.externalline.get",
    "telephony.externalline.delete",
    "telephony.externalcall.register",
    "telephony.externalcall.finish",
    "event.bind",
    "event.unbind",
    "event.get",
    "app.option.set",
    "app.option.get",
    "app.info",
    "placement.bind",
}
# Which scope a method family needs (DOC api-reference/scopes/permissions.md).
SCOPE_OF_PREFIX = {
    "telephony": "telephony",
    "voximplant": "telephony",
    "crm": "crm",
    "user": "user",
    "placement": "placement",
    "tasks": "task",
}

Fetch = Callable[[str], tuple[int, bytes]]
"""GET a URL: (HTTP status, body). The portal downloads RECORD_URL with it."""


def _no_fetch(url: str) -> tuple[int, bytes]:
    raise OSError(f"no fetcher configured for {url}")


def is_public_url(url: str) -> bool:
    """Whether every address ``url``'s host resolves to is public (not loopback, private, link-local...)."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return True  # unresolvable: the download itself will fail
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            return False
    return True


def digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())


def same_phone(a: str, b: str) -> bool:
    """Bitrix24 normalizes numbers before matching; we compare digits, or the last 10 digits of long numbers
    (so 8 926… and +7 926… match, as Russian portals do). [INFER: the docs do not give the algorithm.]"""
    da, db = digits(a), digits(b)
    if not da or not db:
        return False
    if da == db:
        return True
    return len(da) >= 10 and len(db) >= 10 and da[-10:] == db[-10:]


def _upper_keys(params: dict[str, Any]) -> dict[str, Any]:
    """The telephony handlers upper-case their parameter names (PHP ``array_change_key_case``)."""
    return {str(k).upper(): v for k, v in params.items()}


def _int(value: Any, default: int = 0) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        return default


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    return str(value).strip().upper() in {"1", "Y", "TRUE"}


def iso(ts: float, tz: timezone = UTC) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


@dataclass
class User:
    id: int
    name: str
    last_name: str = ""
    email: str = ""
    phone_inner: str | None = None
    active: bool = True
    admin: bool = False
    user_type: str = "employee"
    timeman_status: str = "OPENED"
    personal_mobile: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.name} {self.last_name}".strip()

    def rest(self) -> dict[str, Any]:
        """The ``user.get`` item: IDs as strings, as the docs' example shows (DOC user/user-get.md)."""
        return {
            "ID": str(self.id),
            "XML_ID": None,
            "ACTIVE": self.active,
            "NAME": self.name,
            "LAST_NAME": self.last_name,
            "SECOND_NAME": "",
            "EMAIL": self.email,
            "IS_ONLINE": "N",
            "TIMESTAMP_X": None,
            "PERSONAL_MOBILE": self.personal_mobile or "",
            "WORK_PHONE": "",
            "UF_DEPARTMENT": [1],
            "UF_PHONE_INNER": self.phone_inner,
            "USER_TYPE": self.user_type,
        }


@dataclass
class CrmEntity:
    """A lead or contact: its fields as the API stores them (``PHONE`` is a list of multi-field values)."""

    type: str  # LEAD | CONTACT
    id: int
    fields: dict[str, Any]
    created_at: float

    @property
    def phones(self) -> list[str]:
        values = self.fields.get("PHONE") or []
        if isinstance(values, dict):
            values = list(values.values())
        return [str(v.get("VALUE", "")) for v in values if isinstance(v, dict)]

    @property
    def emails(self) -> list[str]:
        values = self.fields.get("EMAIL") or []
        if isinstance(values, dict):
            values = list(values.values())
        return [str(v.get("VALUE", "")) for v in values if isinstance(v, dict)]

    @property
    def assigned(self) -> int:
        return _int(self.fields.get("ASSIGNED_BY_ID"), 1)

    @property
    def title(self) -> str:
        name = " ".join(str(self.fields.get(k, "")) for k in ("NAME", "LAST_NAME")).strip()
        return str(self.fields.get("TITLE") or name or f"{self.type.title()} #{self.id}")


@dataclass
class Activity:
    """The CRM "call" activity ``finish`` creates (DOC crm/timeline/activities/activity-base/crm-activity-get.md)."""

    id: int
    owner_type: str
    owner_id: int
    call_id: str
    direction: int  # 1 incoming, 2 outgoing (DOC crm-enum-activity-direction.md)
    responsible_id: int
    subject: str
    completed: bool
    created_at: float

    def rest(self) -> dict[str, Any]:
        owner_type_id = {"LEAD": "1", "DEAL": "2", "CONTACT": "3", "COMPANY": "4"}[self.owner_type]
        return {
            "ID": str(self.id),
            "OWNER_TYPE_ID": owner_type_id,
            "OWNER_ID": str(self.owner_id),
            "TYPE_ID": "2",
            "PROVIDER_ID": "VOXIMPLANT_CALL",
            "PROVIDER_TYPE_ID": "CALL",
            "ORIGIN_ID": f"VI_{self.call_id}",
            "SUBJECT": self.subject,
            "COMPLETED": "Y" if self.completed else "N",
            "DIRECTION": str(self.direction),
            "RESPONSIBLE_ID": str(self.responsible_id),
            "CREATED": iso(self.created_at),
        }


@dataclass
class RecordFile:
    id: int
    name: str
    content: bytes
    source: str  # "content" | "url" | "upload"


@dataclass
class Call:
    """One external call: active after ``register``, a statistics record after ``finish``."""

    call_id: str
    client_id: str
    user_id: int
    phone_number: str
    type: int
    line_number: str
    external_call_id: str | None
    start: float
    start_text: str
    registered_at: float
    crm_entity_type: str | None
    crm_entity_id: int | None
    created_lead: int | None
    dedupe_key: tuple[Any, ...]
    # user id -> card visible now; the history keeps every show/hide for tests and the page.
    cards: dict[int, bool] = field(default_factory=dict)
    card_log: list[tuple[float, str, int]] = field(default_factory=list)
    registrations: int = 1
    finished: bool = False
    finished_at: float | None = None
    stat_id: int | None = None
    finish_user_id: int | None = None
    duration: int = 0
    status_code: str = ""
    failed_reason: str = ""
    cost: float = 0.0
    cost_currency: str = ""
    vote: int | None = None
    activity_id: int | None = None
    record: RecordFile | None = None
    click_to_call: bool = False
    transcripts: list[list[dict[str, Any]]] = field(default_factory=list)
    finish_errors: list[str] = field(default_factory=list)

    @property
    def incoming(self) -> bool:
        return self.type != 1

    def statistic(self, app_id: int, app_name: str) -> dict[str, Any]:
        """The statistics record ``finish`` returns (DOC telephony/telephony-external-call-finish.md).

        ``CALL_START_DATE`` is ``{}``: the docs' example shows PHP's DateTime object serialized that way.
        """
        extra: dict[str, Any] = {"ERRORS": list(self.finish_errors)} if self.finish_errors else {}
        return extra | {
            "CALL_ID": self.call_id,
            "EXTERNAL_CALL_ID": self.external_call_id,
            "PORTAL_USER_ID": self.finish_user_id,
            "PHONE_NUMBER": self.phone_number,
            "PORTAL_NUMBER": self.line_number,
            "INCOMING": str(self.type),
            "CALL_DURATION": self.duration,
            "CALL_START_DATE": {},
            "CALL_STATUS": 1 if self.status_code == "200" else 0,
            "CALL_VOTE": self.vote,
            "COST": self.cost,
            "COST_CURRENCY": self.cost_currency,
            "CALL_FAILED_CODE": self.status_code,
            "CALL_FAILED_REASON": self.failed_reason,
            "REST_APP_ID": str(app_id),
            "REST_APP_NAME": app_name,
            "CRM_ACTIVITY_ID": self.activity_id,
            "COMMENT": None,
            "CRM_ENTITY_TYPE": self.crm_entity_type,
            "CRM_ENTITY_ID": self.crm_entity_id,
            "ID": self.stat_id,
        }


@dataclass
class Binding:
    id: int
    client_id: str
    event: str
    handler: str
    auth_type: int
    offline: bool


@dataclass
class Installation:
    """An app installed on this portal: its application token, options, lines and placements."""

    client_id: str
    app_id: int
    app_name: str
    scope: list[str]
    application_token: str
    installed: bool
    options: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    line_ids: dict[str, int] = field(default_factory=dict)
    placements: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Context:
    """Who is calling: the installation (app) and the user the access token belongs to."""

    client_id: str
    user_id: int
    access_token: str


@dataclass
class Result:
    value: Any
    total: int | None = None
    next: int | None = None


@dataclass
class OutgoingEvent:
    """An event Bitrix24 will POST, form-encoded, to ``url`` (DOC api-reference/events/index.md)."""

    id: int
    url: str
    event: str
    payload: dict[str, Any]
    created_at: float
    attempts: list[str] = field(default_factory=list)  # "200", "500", "error: ..." per POST


Method = Callable[["Portal", Context, dict[str, Any]], Result]
METHODS: dict[str, Method] = {}


def method(name: str) -> Callable[[Method], Method]:
    def register(fn: Method) -> Method:
        METHODS[name.lower()] = fn
        return fn

    return register


class Portal:
    """The state and rules of one portal. Thread-safe through one lock (the HTTP server is threaded)."""

    def __init__(
        self,
        domain: str,
        clock: Clock,
        *,
        member_id: str | None = None,
        client_endpoint: str | None = None,
        fetch: Fetch = _no_fetch,
        burst: float = 50,
        drain_per_second: float = 2.0,
        tz: timezone = UTC,
        allow_private_record_urls: bool = False,
    ) -> None:
        self.domain = domain
        self.clock = clock
        self.member_id = member_id or hashlib.md5(domain.encode()).hexdigest()
        self.client_endpoint = client_endpoint or f"https://{domain}/rest/"
        self.server_endpoint = "https://oauth.bitrix.info/rest/"
        self.fetch = fetch
        # A real portal refuses RECORD_URLs on non-public addresses; loopback tests switch this on.
        self.allow_private_record_urls = allow_private_record_urls
        self.tz = tz
        self.bucket = LeakyBucket(clock, burst, drain_per_second)
        self.lock = threading.RLock()
        self.users: dict[int, User] = {}
        self.leads: dict[int, CrmEntity] = {}
        self.contacts: dict[int, CrmEntity] = {}
        self.companies: dict[int, CrmEntity] = {}
        self.activities: dict[int, Activity] = {}
        #: ``tasks.task.add``: id → the fields as given (a missed-call follow-up, for the integration)
        self.tasks: dict[int, dict[str, Any]] = {}
        self.calls: dict[str, Call] = {}
        self.installations: dict[str, Installation] = {}
        self.bindings: list[Binding] = []
        self.outbox: list[OutgoingEvent] = []
        self.events: list[OutgoingEvent] = []  # everything ever emitted, for the page and tests
        self.files: dict[int, RecordFile] = {}
        self.webhook_users: dict[str, int] = {}  # incoming webhook code -> user id
        self.uploads: dict[str, str] = {}  # upload token -> CALL_ID (attachRecord two-step mode)
        counters = ("crm", "activity", "stat", "file", "binding", "event", "task")
        self._ids = {name: itertools.count(1) for name in counters}
        self._crm_ids = itertools.count(1)
        self.add_user(User(1, "Admin", "Portal", email=f"admin@{domain}", admin=True))

    # -- setup ------------------------------------------------------------------------------------------------
    def add_user(self, user: User) -> User:
        with self.lock:
            self.users[user.id] = user
            return user

    def add_contact(self, fields: dict[str, Any]) -> CrmEntity:
        with self.lock:
            return self._add_entity("CONTACT", fields, 1)

    def add_company(self, fields: dict[str, Any]) -> CrmEntity:
        with self.lock:
            return self._add_entity("COMPANY", fields, 1)

    def add_lead(self, fields: dict[str, Any]) -> CrmEntity:
        with self.lock:
            return self._add_entity("LEAD", fields, 1)

    def _next(self, name: str) -> int:
        return next(self._ids[name])

    def _add_entity(self, kind: str, fields: dict[str, Any], user_id: int) -> CrmEntity:
        stored = dict(fields)
        stored.setdefault("ASSIGNED_BY_ID", user_id)
        if isinstance(stored.get("PHONE"), dict):
            stored["PHONE"] = list(stored["PHONE"].values())
        entity = CrmEntity(kind, next(self._crm_ids), stored, self.clock.now())
        self.table(kind)[entity.id] = entity
        return entity

    def table(self, kind: str) -> dict[int, CrmEntity]:
        return {"LEAD": self.leads, "CONTACT": self.contacts, "COMPANY": self.companies}[kind]

    def entity(self, kind: str | None, entity_id: int | None) -> CrmEntity | None:
        if kind in ("LEAD", "CONTACT", "COMPANY") and entity_id is not None:
            return self.table(kind).get(entity_id)
        return None

    # -- dispatch ---------------------------------------------------------------------------------------------
    def call(self, ctx: Context, name: str, params: dict[str, Any]) -> Result:
        """Run REST method ``name`` (case-insensitive) as ``ctx``; raises :class:`RestError`."""
        fn = METHODS.get(name.lower())
        if fn is None:
            raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        inst = self.installations.get(ctx.client_id)
        if inst is None:
            raise RestError("invalid_token", "Unable to get application by token", 401)
        if ctx.client_id.startswith("webhook:") and name.lower() in APP_ONLY:
            raise RestError("WRONG_AUTH_TYPE", "Current authorization type is denied for this method", 403)
        scope = SCOPE_OF_PREFIX.get(name.lower().split(".")[0])
        if scope and scope not in inst.scope and not (scope == "user" and "user_basic" in inst.scope):
            raise RestError(
                "insufficient_scope", "The request requires higher privileges than provided by the access token", 401
            )
        with self.lock:
            return fn(self, ctx, params)

    def installation(self, ctx: Context) -> Installation:
        return self.installations[ctx.client_id]

    def user_of(self, params: dict[str, Any]) -> User:
        """Resolve ``USER_ID`` or ``USER_PHONE_INNER`` (DOC telephony-external-call-register.md)."""
        user_id = _int(params.get("USER_ID"), 0)
        inner = params.get("USER_PHONE_INNER")
        if not user_id and (inner is None or str(inner) == ""):
            raise core_error("USER_ID or USER_PHONE_INNER should be set")
        user: User | None
        if user_id:
            user = self.users.get(user_id)
        else:
            user = next((u for u in self.users.values() if u.active and u.phone_inner == str(inner)), None)
        if user is None or not user.active:
            raise core_error("User is not found or is not active")
        return user

    def find_by_phone(self, phone: str) -> list[CrmEntity]:
        """CRM entities with this phone: contacts first, then leads (how the call card picks a client)."""
        found = [c for c in self.contacts.values() if any(same_phone(phone, p) for p in c.phones)]
        found += [c for c in self.companies.values() if any(same_phone(phone, p) for p in c.phones)]
        found += [lead for lead in self.leads.values() if any(same_phone(phone, p) for p in lead.phones)]
        return found

    def emit(
        self,
        event: str,
        data: dict[str, Any],
        auth: dict[str, Any],
        client_id: str | None = None,
        tokens_for: Callable[[str, int], dict[str, Any]] | None = None,
    ) -> None:
        """Queue ``event`` for every handler bound to it (by the installed app ``client_id`` if given).

        Events are not sent to apps whose install is not finished
        (DOC settings/app-installation/installation-finish.md). A binding with ``auth_type`` gets that user's
        tokens instead of the acting user's (DOC events/event-bind.md), when ``tokens_for`` can mint them.
        """
        for binding in self.bindings:
            if binding.event != event or (client_id is not None and binding.client_id != client_id):
                continue
            inst = self.installations.get(binding.client_id)
            if inst is None or not inst.installed:
                continue
            bound_auth = {**auth, "application_token": inst.application_token}
            if binding.auth_type and tokens_for is not None and "access_token" in auth:
                tokens = tokens_for(binding.client_id, binding.auth_type)
                bound_auth["access_token"] = tokens["access_token"]
            self.push(binding.handler, event, data, bound_auth, binding.id)

    def push(self, url: str, event: str, data: dict[str, Any], auth: dict[str, Any], handler_id: int | None) -> None:
        payload: dict[str, Any] = {"event": event}
        if handler_id is not None:
            payload["event_handler_id"] = str(handler_id)
        payload["data"] = data
        payload["ts"] = str(int(self.clock.now()))
        payload["auth"] = auth
        out = OutgoingEvent(self._next("event"), url, event, payload, self.clock.now())
        self.outbox.append(out)
        self.events.append(out)

    def take_outbox(self) -> list[OutgoingEvent]:
        with self.lock:
            out, self.outbox = self.outbox, []
            return out

    def open_cards(self, user_id: int) -> list[Call]:
        return [c for c in self.calls.values() if not c.finished and c.cards.get(user_id)]

    def audit(self) -> dict[str, Any]:
        """What a customer would call a CRM bug, for fault tests that must end with "every call in the CRM
        exactly once and no card left open" (issue 4; anchors.md §6 items 1, 2, 11).

        * ``unfinished``: registered calls never finished (they stay "in progress" in the portal);
        * ``open_cards``: user id → calls whose card is still shown;
        * ``duplicate_external_ids``: an ``EXTERNAL_CALL_ID`` registered under more than one CALL_ID;
        * ``reregistered``: CALL_IDs the dedupe returned more than once (a register was repeated);
        * ``duplicate_leads``: phone digits → lead ids, when one number has several leads;
        * ``unrecorded``: finished answered calls without a recording;
        * ``undocumented_status``: calls finished with a ``STATUS_CODE`` outside the documented list.
        """
        with self.lock:
            by_external: dict[str, list[str]] = {}
            for call in self.calls.values():
                if call.external_call_id:
                    by_external.setdefault(call.external_call_id, []).append(call.call_id)
            leads_by_phone: dict[str, list[int]] = {}
            for lead in self.leads.values():
                for phone in {digits(p)[-10:] for p in lead.phones if digits(p)}:
                    leads_by_phone.setdefault(phone, []).append(lead.id)
            open_cards: dict[int, list[str]] = {}
            for call in self.calls.values():
                for uid, visible in call.cards.items():
                    if visible and not call.finished:
                        open_cards.setdefault(uid, []).append(call.call_id)
            return {
                "unfinished": [c.call_id for c in self.calls.values() if not c.finished],
                "open_cards": open_cards,
                "duplicate_external_ids": {k: v for k, v in by_external.items() if len(v) > 1},
                "reregistered": {c.call_id: c.registrations for c in self.calls.values() if c.registrations > 1},
                "duplicate_leads": {k: v for k, v in leads_by_phone.items() if len(v) > 1},
                "unrecorded": [
                    c.call_id for c in self.calls.values() if c.finished and c.status_code == "200" and c.record is None
                ],
                "undocumented_status": {
                    c.call_id: c.status_code
                    for c in self.calls.values()
                    if c.finished and c.status_code not in STATUS_CODES
                },
            }

    # -- telephony core, shared by REST and click-to-call ------------------------------------------------------
    def register(
        self, client_id: str, p: dict[str, Any], *, click_to_call: bool = False
    ) -> tuple[Call, dict[str, Any]]:
        """``telephony.externalCall.register`` (DOC telephony/telephony-external-call-register.md)."""
        user = self.user_of(p)
        phone = str(p.get("PHONE_NUMBER") or "")
        if not phone:
            raise core_error("PHONE_NUMBER should be set")
        if not digits(phone):
            raise core_error("Unsupported phone number format")
        call_type = _int(p.get("TYPE"), 0)
        if call_type not in CALL_TYPES:
            raise core_error("Unknown TYPE")
        now = self.clock.now()
        start_text = str(p.get("CALL_START_DATE") or "")
        if start_text:
            try:
                start = datetime.fromisoformat(start_text).timestamp()
            except ValueError:
                raise core_error("CALL_START_DATE should be in the ISO-8601 format") from None
        else:
            start, start_text = now, iso(now, self.tz)
        line = str(p.get("LINE_NUMBER") or "")
        external = p.get("EXTERNAL_CALL_ID")
        external_id = str(external) if external not in (None, "") else None
        key = (client_id, digits(phone), call_type, user.id, line, external_id)
        for existing in self.calls.values():
            # The 30-minute dedupe: same key, same app, not finished -> the same CALL_ID (DOC register page).
            if existing.dedupe_key == key and not existing.finished and now - existing.registered_at < DEDUPE_WINDOW:
                existing.registrations += 1
                if _flag(p.get("SHOW"), True):
                    self._show(existing, [user.id], now)
                return existing, self._register_result(existing)
        entity_type = str(p.get("CRM_ENTITY_TYPE") or "").upper() or None
        entity_id = _int(p.get("CRM_ENTITY_ID"), 0) or None
        if entity_type and entity_id and self.entity(entity_type, entity_id) is None:
            entity_type = entity_id = None
        if not (entity_type and entity_id):
            matches = self.find_by_phone(phone)
            entity_type, entity_id = (matches[0].type, matches[0].id) if matches else (None, None)
        created: int | None = None
        crm_create = _flag(p.get("CRM_CREATE"), False)
        inst = self.installations[client_id]
        line_conf = inst.lines.get(line)
        if call_type == 1 and line_conf is not None and line_conf.get("CRM_AUTO_CREATE") == "N":
            crm_create = False  # outgoing calls on a line with CRM_AUTO_CREATE=N never create (DOC register page)
        if entity_type is None and crm_create:
            source = str(p.get("CRM_SOURCE") or "CALL")
            verb = "Incoming" if call_type != 1 else "Outgoing"
            lead = self._add_entity(
                "LEAD",
                {
                    "TITLE": f"{phone} - {verb} call",
                    "PHONE": [{"VALUE": phone, "VALUE_TYPE": "WORK"}],
                    "SOURCE_ID": source,
                    "ASSIGNED_BY_ID": user.id,
                    "STATUS_ID": "NEW",
                },
                user.id,
            )
            created, entity_type, entity_id = lead.id, "LEAD", lead.id
        call = Call(
            call_id=f"externalCall.{secrets.token_hex(16)}.{int(now)}",
            client_id=client_id,
            user_id=user.id,
            phone_number=phone,
            type=call_type,
            line_number=line,
            external_call_id=external_id,
            start=start,
            start_text=start_text,
            registered_at=now,
            crm_entity_type=entity_type,
            crm_entity_id=entity_id,
            created_lead=created,
            dedupe_key=key,
            click_to_call=click_to_call,
        )
        self.calls[call.call_id] = call
        if _flag(p.get("SHOW"), True):
            self._show(call, [user.id], now)
        return call, self._register_result(call)

    @staticmethod
    def _register_result(call: Call) -> dict[str, Any]:
        result: dict[str, Any] = {
            "CALL_ID": call.call_id,
            "CRM_CREATED_LEAD": call.created_lead,
            "CRM_CREATED_ENTITIES": (
                [{"ENTITY_TYPE": "LEAD", "ENTITY_ID": call.created_lead}] if call.created_lead else []
            ),
        }
        if call.crm_entity_type:
            result["CRM_ENTITY_TYPE"] = call.crm_entity_type
            result["CRM_ENTITY_ID"] = call.crm_entity_id
        return result

    @staticmethod
    def _show(call: Call, users: list[int], now: float) -> None:
        for uid in users:
            call.cards[uid] = True
            call.card_log.append((now, "show", uid))

    def active_call(self, client_id: str, call_id: str) -> Call | None:
        """A registered, unfinished call. Any caller may address it by CALL_ID (the docs' show example uses a
        webhook); only the register dedupe is per application."""
        call = self.calls.get(call_id)
        if call is None or call.finished:
            return None
        return call

    def finish(self, client_id: str, p: dict[str, Any]) -> Call:
        """``telephony.externalCall.finish`` (DOC telephony/telephony-external-call-finish.md)."""
        raw = p.get("CALL_ID")
        if not isinstance(raw, str):
            raise RestError("INVALID_ARGUMENT", "CALL_ID must be a string", 400)
        user = self.user_of(p)
        call = self.active_call(client_id, raw)
        if call is None:
            # Unknown, or finished already: a finished call has left the active table [INFER, protocols.md §E].
            raise core_error("Call is not found (call should be registered prior to finishing)")
        now = self.clock.now()
        call.duration = max(0, _int(p.get("DURATION"), 0))
        status = str(p.get("STATUS_CODE") or ("200" if call.duration > 0 else "304"))
        call.status_code = status
        call.failed_reason = str(p.get("FAILED_REASON") or "")
        try:
            call.cost = float(p.get("COST") or 0)
        except ValueError:
            call.cost = 0.0
        call.cost_currency = str(p.get("COST_CURRENCY") or "")
        vote = _int(p.get("VOTE"), 0)
        call.vote = vote if 1 <= vote <= 5 else None
        call.finish_user_id = user.id
        call.finished = True
        call.finished_at = now
        call.stat_id = self._next("stat")
        for uid, visible in list(call.cards.items()):
            if visible:  # finish closes every card (CODE asterlink; the card shows the call as ended)
                call.cards[uid] = False
                call.card_log.append((now, "finish", uid))
        if call.created_lead is not None and call.created_lead in self.leads:
            # "becomes responsible for entities auto-created during the call" (DOC finish page, USER_ID).
            self.leads[call.created_lead].fields["ASSIGNED_BY_ID"] = user.id
        if call.crm_entity_type and call.crm_entity_id:
            answered = status == "200"
            verb = "Incoming" if call.incoming else "Outgoing"
            activity = Activity(
                id=self._next("activity"),
                owner_type=call.crm_entity_type,
                owner_id=call.crm_entity_id,
                call_id=call.call_id,
                direction=2 if call.type == 1 else 1,
                responsible_id=user.id,
                subject=f"{verb} call {call.phone_number}" + ("" if answered else " (missed)"),
                completed=answered or call.type == 1,
                created_at=now,
            )
            self.activities[activity.id] = activity
            call.activity_id = activity.id
        record_url = str(p.get("RECORD_URL") or "")
        if record_url:
            # The call is finished either way; a failed download shows up in the result's ERRORS (DOC finish page).
            try:
                self._download_record(call, record_url, record_url.rsplit("/", 1)[-1] or "record.mp3")
            except RestError as exc:
                call.finish_errors.append(exc.description)
        return call

    def finished_call(self, client_id: str, call_id: str) -> Call | None:
        call = self.calls.get(call_id)
        if call is None or not call.finished:
            return None
        return call

    def store_record(self, call: Call, name: str, content: bytes, source: str) -> RecordFile:
        """Attach (or replace: one record per CALL_ID, DOC attach-record page) the call's recording."""
        rec = RecordFile(self._next("file"), name, content, source)
        self.files[rec.id] = rec
        call.record = rec
        return rec

    def _download_record(self, call: Call, url: str, name: str) -> RecordFile:
        if not self.allow_private_record_urls and not is_public_url(url):
            # DOC telephony-external-call-attach-record.md: a RECORD_URL on a LAN/loopback address is refused.
            raise RestError("", "Record URL resolves to a non-public address and was blocked.", 400)
        try:
            status, body = self.fetch(url)
        except OSError as exc:
            raise core_error(f"Could not download file: {exc}") from None
        if status != 200:
            raise core_error(f"Server returns HTTP error code {status}")
        return self.store_record(call, name, body, "url")


def _check_record_name(name: str) -> None:
    if not name:
        raise core_error("File name is empty")
    if not name.lower().endswith((".mp3", ".wav")):
        raise core_error("Wrong file extension. Only wav and mp3 are allowed")


# == telephony.externalLine.* (DOC telephony/telephony-external-line-*.md) ======================================
@method("telephony.externalLine.add")
def _line_add(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    p = _upper_keys(params)
    number = str(p.get("NUMBER") or "")
    if not number:
        raise core_error("NUMBER should not be empty")
    inst = portal.installation(ctx)
    if number in inst.lines:
        raise core_error("Line already exists")
    line_id = max(inst.line_ids.values(), default=0) + 1
    inst.line_ids[number] = line_id
    auto = str(p.get("CRM_AUTO_CREATE") or "Y").upper()
    inst.lines[number] = {"NUMBER": number, "NAME": str(p.get("NAME") or ""), "CRM_AUTO_CREATE": auto}
    return Result({"ID": line_id})


@method("telephony.externalLine.update")
def _line_update(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    p = _upper_keys(params)
    number = str(p.get("NUMBER") or "")
    if not number:
        raise core_error("NUMBER should not be empty")
    inst = portal.installation(ctx)
    line = inst.lines.get(number)
    if line is None:
        raise core_error(f"Could not find line with number {number}")
    changes: dict[str, Any] = {k: str(p[k]) for k in ("NAME", "CRM_AUTO_CREATE") if k in p}
    if not changes:
        raise core_error("There are no fields to update")
    line.update(changes)
    return Result({"ID": str(inst.line_ids[number])})


@method("telephony.externalLine.get")
def _line_get(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return Result([dict(line) for line in portal.installation(ctx).lines.values()])


@method("telephony.externalLine.delete")
def _line_delete(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    p = _upper_keys(params)
    number = str(p.get("NUMBER") or "")
    if not number:
        raise core_error("NUMBER should not be empty")
    inst = portal.installation(ctx)
    if inst.lines.pop(number, None) is None:
        raise core_error(f"Could not find line with number {number}")
    inst.line_ids.pop(number, None)
    return Result([])


# == telephony.externalCall.* ====================================================================================
@method("telephony.externalCall.register")
def _register(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return Result(portal.register(ctx.client_id, _upper_keys(params))[1])


def _users_param(value: Any, default: int) -> list[int]:
    if value is None or value == "":
        return [default]
    if isinstance(value, list):
        return [_int(v) for v in value if _int(v)]
    if isinstance(value, dict):
        return [_int(v) for v in value.values() if _int(v)]
    return [_int(value)] if _int(value) else [default]


@method("telephony.externalCall.show")
def _show(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    """DOC telephony/telephony-external-call-show.md: ``false`` when the call is not found, no error."""
    p = _upper_keys(params)
    call = portal.active_call(ctx.client_id, str(p.get("CALL_ID") or ""))
    if call is None:
        return Result(False)
    portal._show(call, _users_param(p.get("USER_ID"), call.user_id), portal.clock.now())
    return Result(True)


@method("telephony.externalCall.hide")
def _hide(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    """DOC telephony/telephony-external-call-hide.md."""
    p = _upper_keys(params)
    call = portal.active_call(ctx.client_id, str(p.get("CALL_ID") or ""))
    if call is None:
        return Result(False)
    now = portal.clock.now()
    for uid in _users_param(p.get("USER_ID"), call.user_id):
        call.cards[uid] = False
        call.card_log.append((now, "hide", uid))
    return Result(True)


@method("telephony.externalCall.finish")
def _finish(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    inst = portal.installation(ctx)
    call = portal.finish(ctx.client_id, _upper_keys(params))
    return Result(call.statistic(inst.app_id, inst.app_name))


@method("telephony.externalCall.attachRecord")
def _attach_record(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    """DOC telephony/telephony-external-call-attach-record.md: content, URL, or a two-step upload."""
    p = _upper_keys(params)
    call_id = str(p.get("CALL_ID") or "")
    name = str(p.get("FILENAME") or "")
    url = str(p.get("RECORD_URL") or "")
    if not name and not url:
        # The docs give these two an empty error code.
        raise RestError(
            "", "Required parameters are not set. Request should contain either URL or FILENAME parameter", 400
        )
    call = portal.finished_call(ctx.client_id, call_id)
    if call is None:
        raise RestError("", "Call is not found in the statistic table. It looks like it is not finished yet.", 400)
    if url:
        name = name or url.rsplit("/", 1)[-1].split("?", 1)[0]
        _check_record_name(name)
        return Result({"FILE_ID": portal._download_record(call, url, name).id})
    _check_record_name(name)
    if "FILE_CONTENT" in p:
        content = str(p.get("FILE_CONTENT") or "")
        if not content:
            raise core_error("File content is empty.")
        try:
            raw = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise core_error("File content is not properly encoded. Base64 encoding is expected.") from None
        return Result({"FILE_ID": portal.store_record(call, name, raw, "content").id})
    token = f"telephony|{secrets.token_hex(8)}|{name}"
    portal.uploads[token] = call.call_id
    upload = f"{portal.client_endpoint}upload.json?auth={quote(ctx.access_token)}&token={quote(token, safe='')}"
    return Result({"uploadUrl": upload, "fieldName": "file"})


def complete_upload(portal: Portal, token: str, name: str, content: bytes) -> RecordFile:
    """The second step of attachRecord's upload mode: the multipart POST to ``uploadUrl``."""
    with portal.lock:
        call_id = portal.uploads.pop(token, None)
        call = portal.calls.get(call_id or "")
        if call is None:
            raise RestError("ERROR_UPLOAD", "Upload token is not valid", 400)
        if not content:
            raise core_error("File content is empty.")
        return portal.store_record(call, token.split("|", 2)[-1] or name, content, "upload")


@method("telephony.call.attachTranscription")
def _attach_transcription(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    """DOC telephony/telephony-call-attach-transcription.md (only after finish)."""
    p = _upper_keys(params)
    call_id = str(p.get("CALL_ID") or "")
    if not call_id:
        raise core_error("CALL_ID should be set")
    messages = p.get("MESSAGES")
    if isinstance(messages, dict):
        messages = list(messages.values())
    if not isinstance(messages, list):
        raise core_error("MESSAGES should be an array")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("SIDE") not in ("Client", "User"):
            raise core_error(f"MESSAGES[{i}][SIDE] should be either Client or User")
    call = portal.finished_call(ctx.client_id, call_id)
    if call is None:
        raise core_error(f"Call {call_id} is not found. Is it finished?")
    call.transcripts.append(messages)
    return Result({"TRANSCRIPT_ID": len(call.transcripts)})


@method("telephony.externalCall.searchCrmEntities")
def _search_crm(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    """DOC telephony/telephony-external-call-search-crm-entities.md."""
    p = _upper_keys(params)
    phone = str(p.get("PHONE_NUMBER") or "")
    if not phone:
        raise core_error("PHONE_NUMBER is empty")
    out = []
    for entity in portal.find_by_phone(phone):
        owner = portal.users.get(entity.assigned)
        out.append(
            {
                "CRM_ENTITY_TYPE": entity.type,
                "CRM_ENTITY_ID": entity.id,
                "ASSIGNED_BY_ID": entity.assigned,
                "NAME": entity.title,
                "ASSIGNED_BY": {
                    "ID": str(entity.assigned),
                    "TIMEMAN_STATUS": owner.timeman_status if owner else "UNAVAILABLE",
                    "USER_PHONE_INNER": owner.phone_inner if owner else None,
                    "WORK_PHONE": None,
                    "PERSONAL_PHONE": None,
                    "PERSONAL_MOBILE": owner.personal_mobile if owner else None,
                },
            }
        )
    return Result(out)


# == voximplant.statistic.get (DOC telephony/voximplant/voximplant-statistic-get.md) ============================
def _stat_record(portal: Portal, call: Call) -> dict[str, Any]:
    """One row of the call history: values are strings, as the docs' example shows."""
    inst = portal.installations.get(call.client_id)

    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    return {
        "ID": str(call.stat_id),
        "PORTAL_USER_ID": text(call.finish_user_id),
        "PORTAL_NUMBER": call.line_number,
        "PHONE_NUMBER": call.phone_number,
        "CALL_ID": call.call_id,
        "EXTERNAL_CALL_ID": call.external_call_id,
        "CALL_CATEGORY": "external",
        "CALL_LOG": None,
        "CALL_DURATION": str(call.duration),
        "CALL_START_DATE": iso(call.start, portal.tz),
        "CALL_RECORD_URL": None,
        "CALL_VOTE": text(call.vote),
        "COST": f"{call.cost:.4f}",
        "COST_CURRENCY": call.cost_currency,
        "CALL_FAILED_CODE": call.status_code,
        "CALL_FAILED_REASON": call.failed_reason,
        "CRM_ENTITY_TYPE": call.crm_entity_type,
        "CRM_ENTITY_ID": text(call.crm_entity_id),
        "CRM_ACTIVITY_ID": text(call.activity_id),
        "REST_APP_ID": text(inst.app_id) if inst else None,
        "REST_APP_NAME": inst.app_name if inst else None,
        "TRANSCRIPT_ID": str(len(call.transcripts)) if call.transcripts else None,
        "TRANSCRIPT_PENDING": "N",
        "SESSION_ID": None,
        "REDIAL_ATTEMPT": None,
        "COMMENT": None,
        "RECORD_DURATION": None,
        "RECORD_FILE_ID": call.record.id if call.record else None,
        "CALL_TYPE": str(call.type),
    }


def _compare(have: Any, op: str, wanted: Any, key: str) -> bool:
    def norm(value: Any) -> Any:
        if value is None:
            return ""
        if key == "CALL_START_DATE":
            try:
                return datetime.fromisoformat(str(value)).timestamp()
            except ValueError:
                return str(value)
        text = str(value)
        return int(text) if text.lstrip("-").isdigit() else text

    if isinstance(wanted, list) and op in ("", "=", "!", "!="):
        hit = any(norm(have) == norm(w) for w in wanted)
        return not hit if op.startswith("!") else hit
    a, b = norm(have), norm(wanted)
    if op in ("%", "!%", "?"):
        hit = str(b).lower() in str(a).lower()
        return not hit if op == "!%" else hit
    if type(a) is not type(b):
        a, b = str(a), str(b)
    result = {
        "": a == b,
        "=": a == b,
        "!": a != b,
        "!=": a != b,
        ">=": a >= b,
        ">": a > b,
        "<=": a <= b,
        "<": a < b,
    }
    return bool(result.get(op, False))


@method("voximplant.statistic.get")
def _statistic_get(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    flt = params.get("FILTER", params.get("filter")) or {}
    if not isinstance(flt, dict):
        flt = {}
    rows = [_stat_record(portal, c) for c in portal.calls.values() if c.finished]
    for raw_key, wanted in flt.items():
        match = re.match(r"^(!><|><|>=|<=|!=|!%|!|>|<|=|%|\?)?(.*)$", str(raw_key))
        op, key = (match.group(1) or "", match.group(2).upper()) if match else ("", str(raw_key).upper())
        if op in ("><", "!><") and isinstance(wanted, list) and len(wanted) == 2:
            inside = [
                r
                for r in rows
                if _compare(r.get(key), ">=", wanted[0], key) and _compare(r.get(key), "<=", wanted[1], key)
            ]
            rows = inside if op == "><" else [r for r in rows if r not in inside]
        else:
            rows = [r for r in rows if _compare(r.get(key), op, wanted, key)]
    sort = str(params.get("SORT", params.get("sort")) or "")
    if sort:
        desc = str(params.get("ORDER", params.get("order")) or "ASC").upper() == "DESC"
        rows.sort(key=lambda r: (r.get(sort.upper()) is None, _sortable(r.get(sort.upper()))), reverse=desc)
    start = max(_int(params.get("start"), 0), 0)
    page = rows[start : start + PAGE_SIZE]
    more = start + PAGE_SIZE < len(rows)
    return Result(page, total=len(rows), next=start + PAGE_SIZE if more else None)


def _sortable(value: Any) -> tuple[int, Any]:
    text = "" if value is None else str(value)
    return (0, int(text)) if text.isdigit() else (1, text)


# == users (DOC api-reference/user/user-get.md, user-current.md) ================================================
def _matches(user: User, key: str, wanted: Any) -> bool:
    op = ""
    for prefix in ("!=", "!%", "!", "=", "%"):
        if key.startswith(prefix):
            op, key = prefix, key[len(prefix) :]
            break
    item = user.rest()
    have = item.get(key.upper())
    wanted_list = wanted if isinstance(wanted, list) else [wanted]

    def norm(v: Any) -> str:
        if isinstance(v, bool):
            return "Y" if v else "N"
        text = "" if v is None else str(v)
        return (
            {"TRUE": "Y", "FALSE": "N", "1": "Y", "0": "N"}.get(text.upper(), text) if key.upper() == "ACTIVE" else text
        )

    if key.upper() == "UF_DEPARTMENT":
        hit = any(str(w) in {str(d) for d in item["UF_DEPARTMENT"]} for w in wanted_list)
    elif op in ("%", "!%"):
        hit = any(str(w).lower() in norm(have).lower() for w in wanted_list)
    else:
        hit = any(norm(w) == norm(have) for w in wanted_list)
    return not hit if op.startswith("!") else hit


@method("user.get")
def _user_get(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    flt = params.get("FILTER", params.get("filter")) or {}
    if not isinstance(flt, dict):
        flt = {}
    # Top-level field keys also filter (the old calling style, ``user.get?UF_PHONE_INNER=101``).
    extra = {k: v for k, v in params.items() if k.upper() in {"ID", "UF_PHONE_INNER", "ACTIVE", "EMAIL", "USER_TYPE"}}
    conditions = {**extra, **flt}
    users = [u for u in portal.users.values() if all(_matches(u, k, v) for k, v in conditions.items())]
    sort = str(params.get("sort") or params.get("SORT") or "ID").upper()
    desc = str(params.get("order") or params.get("ORDER") or "ASC").upper() == "DESC"

    def sort_key(u: User) -> tuple[int, Any]:
        value = u.rest().get(sort)
        if sort == "ID":
            return (0, u.id)
        return (1 if value in (None, "") else 0, str(value or ""))

    users.sort(key=sort_key, reverse=desc)
    start = _int(params.get("start"), 0)
    page_start = max(start, 0)
    page = users[page_start : page_start + PAGE_SIZE]
    more = page_start + PAGE_SIZE < len(users)
    return Result(
        [u.rest() for u in page],
        total=None if start == -1 else len(users),
        next=page_start + PAGE_SIZE if more and start != -1 else None,
    )


@method("user.current")
def _user_current(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return Result(portal.users[ctx.user_id].rest())


@method("profile")
def _profile(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    user = portal.users[ctx.user_id]
    return Result({"ID": str(user.id), "ADMIN": user.admin, "NAME": user.name, "LAST_NAME": user.last_name})


# == CRM (DOC crm/leads/crm-lead-add.md, crm/contacts/crm-contact-add.md, crm/duplicates/...) =====================
def _fields(params: dict[str, Any]) -> dict[str, Any]:
    fields = params.get("fields", params.get("FIELDS"))
    if not isinstance(fields, dict):
        raise RestError("", "Parameter 'fields' must be array.", 400)
    return {str(k).upper(): v for k, v in fields.items()}


def _crm_add(portal: Portal, ctx: Context, params: dict[str, Any], kind: str) -> Result:
    fields = _fields(params)
    entity = portal._add_entity(kind, fields, ctx.user_id)
    event = f"ONCRM{kind}ADD"
    portal.emit(event, {"FIELDS": {"ID": str(entity.id)}}, _event_auth(portal))
    return Result(entity.id)


def _event_auth(portal: Portal) -> dict[str, Any]:
    """The ``auth`` block of a CRM event: no tokens (the acting user's tokens are only added where the emulator
    mints them; DOC events/index.md says to always check for ``access_token``)."""
    return {
        "domain": portal.domain,
        "client_endpoint": portal.client_endpoint,
        "server_endpoint": portal.server_endpoint,
        "member_id": portal.member_id,
    }


@method("tasks.task.add")
def _task_add(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    """DOC api-reference/tasks/tasks-task-add.md: ``fields`` per tasks.task.getfields; TITLE and RESPONSIBLE_ID
    required. The page shows no success response; ``{"task": {"id": "N", ...}}`` is what the ``tasks.task.*``
    methods return [INFER]."""
    fields = _fields(params)
    title = str(fields.get("TITLE") or "").strip()
    if not title:
        raise RestError("ERROR_CORE", "TITLE is required", 400)  # [INFER] the docs give no error texts
    responsible = portal.users.get(_int(fields.get("RESPONSIBLE_ID"), 0))
    if responsible is None or not responsible.active:
        raise RestError("ERROR_CORE", "RESPONSIBLE_ID must be an active user", 400)
    with portal.lock:
        task_id = portal._next("task")
        portal.tasks[task_id] = {**fields, "CREATED_BY": fields.get("CREATED_BY") or ctx.user_id}
    return Result({"task": {"id": str(task_id), "title": title, "responsibleId": str(responsible.id)}})


@method("crm.lead.add")
def _lead_add(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return _crm_add(portal, ctx, params, "LEAD")


@method("crm.contact.add")
def _contact_add(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return _crm_add(portal, ctx, params, "CONTACT")


def _crm_get(portal: Portal, params: dict[str, Any], kind: str) -> Result:
    entity = portal.entity(kind, _int(params.get("id", params.get("ID")), 0))
    if entity is None:
        raise RestError("", "Not found", 400)
    return Result({"ID": str(entity.id), **entity.fields})


@method("crm.lead.get")
def _lead_get(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return _crm_get(portal, params, "LEAD")


@method("crm.company.add")
def _company_add(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return _crm_add(portal, ctx, params, "COMPANY")


@method("crm.company.get")
def _company_get(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return _crm_get(portal, params, "COMPANY")


@method("crm.contact.get")
def _contact_get(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return _crm_get(portal, params, "CONTACT")


@method("crm.activity.get")
def _activity_get(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    activity = portal.activities.get(_int(params.get("id", params.get("ID")), 0))
    if activity is None:
        raise RestError("", "Not found", 400)
    return Result(activity.rest())


@method("crm.duplicate.findbycomm")
def _find_by_comm(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    """DOC crm/duplicates/crm-duplicate-find-by-comm.md; the odd error codes are the docs'."""
    kind = str(params.get("type", params.get("TYPE")) or "").upper()
    if kind not in ("PHONE", "EMAIL"):
        raise RestError("Communication type is not defined", "Parameter 'type' is required.", 400)
    values = params.get("values", params.get("VALUES"))
    if isinstance(values, dict):
        values = list(values.values())
    if isinstance(values, str):
        values = [values]
    if not values:
        raise RestError("Communication values is not defined", "Parameter 'values' is required.", 400)
    if len(values) > 20:
        raise RestError("Too many communication values", "The maximum number of values is 20.", 400)
    wanted = str(params.get("entity_type", params.get("ENTITY_TYPE")) or "").upper()
    out: dict[str, list[int]] = {}
    for kind_name, table in (("LEAD", portal.leads), ("CONTACT", portal.contacts), ("COMPANY", portal.companies)):
        if wanted and wanted != kind_name:
            continue
        ids = []
        for entity in table.values():
            comms = entity.phones if kind == "PHONE" else entity.emails
            same: Callable[[str, str], bool] = same_phone if kind == "PHONE" else (lambda a, b: a.lower() == b.lower())
            if any(same(str(v), c) for v in values for c in comms):
                ids.append(entity.id)
        if ids:
            out[kind_name] = ids[:20]
    return Result(out or [])


# == events (DOC api-reference/events/event-bind.md, event-unbind.md, event-get.md) ==============================
@method("event.bind")
def _event_bind(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    event = str(params.get("event", params.get("EVENT")) or "").upper()
    handler = str(params.get("handler", params.get("HANDLER")) or "")
    if event not in KNOWN_EVENTS:
        raise RestError("ERROR_EVENT_NOT_FOUND", "Event not found", 400)
    if not handler:
        raise RestError("ERROR_CORE", "Handler not found", 400)
    offline = str(params.get("event_type", "online")).lower() == "offline"
    auth_type = _int(params.get("auth_type"), 0)
    admin = portal.users[ctx.user_id].admin
    if offline and not admin:
        raise RestError(
            "ACCESS_DENIED", "Access denied! Offline events binding requires administrator access rights", 403
        )
    if auth_type and auth_type != ctx.user_id and not admin:
        raise RestError(
            "ACCESS_DENIED", "Access denied! Event binding with AUTH_TYPE requires administrator access rights", 403
        )
    for b in portal.bindings:
        if b.client_id == ctx.client_id and b.event == event and b.handler == handler:
            raise RestError("ERROR_HANDLER_ALREADY_EXIST", "Handler already exists!", 400)
    portal.bindings.append(Binding(portal._next("binding"), ctx.client_id, event, handler, auth_type, offline))
    return Result(True)


@method("event.unbind")
def _event_unbind(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    event = str(params.get("event", params.get("EVENT")) or "").upper()
    handler = str(params.get("handler", params.get("HANDLER")) or "")
    keep, removed = [], 0
    for b in portal.bindings:
        if b.client_id == ctx.client_id and (not event or b.event == event) and (not handler or b.handler == handler):
            removed += 1
        else:
            keep.append(b)
    portal.bindings = keep
    return Result({"count": removed})


@method("event.get")
def _event_get(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return Result(
        [
            {"event": b.event, "handler": b.handler, "auth_type": str(b.auth_type), "offline": int(b.offline)}
            for b in portal.bindings
            if b.client_id == ctx.client_id
        ]
    )


# == app (DOC api-reference/common/settings/app-option-*.md, common/system/app-info.md) ===========================
@method("app.option.set")
def _option_set(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    options = params.get("options", params.get("OPTIONS"))
    if not options or not isinstance(options, dict):
        raise RestError("ArgumentNullException", "options is empty", 400)
    if not portal.users[ctx.user_id].admin:
        raise RestError("AccessException", "Administrator authorization required", 403)
    portal.installation(ctx).options.update({str(k): v for k, v in options.items()})
    return Result(True)


@method("app.option.get")
def _option_get(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    options = portal.installation(ctx).options
    name = params.get("option", params.get("OPTION"))
    if name:
        return Result(options.get(str(name)))
    return Result(dict(options) or [])


@method("app.info")
def _app_info(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    inst = portal.installation(ctx)
    return Result(
        {
            "ID": inst.app_id,
            "CODE": inst.client_id,
            "VERSION": 1,
            "STATUS": "L",
            "INSTALLED": inst.installed,
            "PAYMENT_EXPIRED": "N",
            "DAYS": None,
            "LANGUAGE_ID": "en",
            "LICENSE": "en_ent10000",
            "LICENSE_TYPE": "ent10000",
            "LICENSE_FAMILY": "ent",
        }
    )


@method("scope")
def _scope(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return Result(list(portal.installation(ctx).scope))


@method("placement.bind")
def _placement_bind(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    """DOC api-reference/widgets/placement-bind.md."""
    p = _upper_keys(params)
    if not p.get("PLACEMENT") or not p.get("HANDLER"):
        raise RestError("ERROR_ARGUMENT", "PLACEMENT and HANDLER are required", 400)
    portal.installation(ctx).placements.append(
        {"placement": str(p["PLACEMENT"]).upper(), "handler": str(p["HANDLER"]), "title": str(p.get("TITLE") or "")}
    )
    return Result(True)


@method("placement.get")
def _placement_get(portal: Portal, ctx: Context, params: dict[str, Any]) -> Result:
    return Result(list(portal.installation(ctx).placements))
