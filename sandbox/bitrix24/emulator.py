"""Several portals, the OAuth server in front of them, the app install flow, batch, and the fault knobs.

Still no sockets: :meth:`Emulator.rest` and :meth:`Emulator.oauth_token` take parsed parameters and return
``(HTTP status, JSON body)``; ``sandbox.bitrix24.server`` puts HTTP around them.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from sandbox.bitrix24 import errors
from sandbox.bitrix24.clock import Clock, SystemClock
from sandbox.bitrix24.errors import OAuthError, RestError
from sandbox.bitrix24.forms import parse_php_pairs
from sandbox.bitrix24.portal import Context, Fetch, Installation, OutgoingEvent, Portal, Result, _no_fetch

ACCESS_TTL = 3600  # DOC settings/oauth/index.md: expires_in 3600
REFRESH_TTL = 180 * 24 * 3600  # DOC settings/oauth/auto-renewal.md: 180 days
MAX_BATCH = 50  # DOC settings/how-to-call-rest-api/batch.md
DEFAULT_SCOPE = ["crm", "telephony", "user", "placement", "app", "task"]


@dataclass
class App:
    """A local application as registered in a portal's Developer resources (client_id/secret, install URL)."""

    client_id: str
    client_secret: str
    handler_url: str = ""
    scope: list[str] = field(default_factory=lambda: list(DEFAULT_SCOPE))
    name: str = "pbxlink"
    has_ui: bool = False  # False: "uses API only" -> ONAPPINSTALL; True: install page, then installFinish
    app_id: int = 1


@dataclass
class AccessGrant:
    domain: str
    client_id: str
    user_id: int
    expires_at: float


@dataclass
class RefreshGrant:
    domain: str
    client_id: str
    user_id: int
    expires_at: float
    used: bool = False


@dataclass
class Faults:
    """Knobs for failures the integration must survive (anchors.md §6: tokens, rate limits, outages, duplicates).

    Rates are probabilities per REST request; ``expire_every`` makes every N-th REST request find its token
    expired; ``outage_until`` (unix time) makes the whole emulator unavailable; ``outage_mode`` picks how.
    """

    latency: float = 0.0
    query_limit_rate: float = 0.0
    server_error_rate: float = 0.0
    operation_limit_rate: float = 0.0
    expire_every: int = 0
    outage_until: float = 0.0
    outage_mode: str = "503"  # "503": nginx-style 503 page; "reset": the connection is closed without an answer
    duplicate_events: bool = False
    event_delay: float = 0.0  # seconds before each event is posted ("may arrive with a delay", DOC simple-way.md)
    event_loss_rate: float = 0.0  # probability an event is never posted (the queue drops it; there are no retries)
    rate_limit: bool = True
    #: Methods that fail with INTERNAL_SERVER_ERROR every time, alone or inside a batch (e.g. ``("event.bind",)``).
    failing_methods: tuple[str, ...] = ()

    def fails(self, method: str) -> bool:
        return method.lower() in {m.lower() for m in self.failing_methods}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def international(phone: str) -> str:
    """``PHONE_NUMBER_INTERNATIONAL`` of ONEXTERNALCALLSTART: ``+`` and digits; a Russian trunk-prefixed
    ``8XXXXXXXXXX`` becomes ``+7XXXXXXXXXX``. [INFER: Bitrix24 normalizes by the portal's country; the docs'
    example only shows an already international number.]"""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not phone.strip().startswith("+") and len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    return f"+{digits}" if digits else phone


_RESULT_REF = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])*)")


def _php_array(value: dict[str, Any]) -> dict[str, Any] | list[Any]:
    """How PHP's ``json_encode`` renders an array: ``[]`` when empty, a list when keyed ``0..n-1``."""
    if list(value) == [str(i) for i in range(len(value))]:
        return list(value.values())
    return value


class Emulator:
    """The whole fake cloud: portals by domain, registered apps, tokens, faults."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        base_url: str = "",
        access_ttl: float = ACCESS_TTL,
        oauth_server_endpoint: str = "https://oauth.bitrix.info/rest/",
        fetch: Fetch = _no_fetch,
        seed: int | None = None,
        allow_private_record_urls: bool = False,
    ) -> None:
        self.clock = clock or SystemClock()
        self.base_url = base_url.rstrip("/")
        self.access_ttl = access_ttl
        self.oauth_server_endpoint = oauth_server_endpoint
        self.fetch = fetch
        self.allow_private_record_urls = allow_private_record_urls
        self.portals: dict[str, Portal] = {}
        self.moved: dict[str, str] = {}  # old domain -> new (302)
        self.apps: dict[str, App] = {}
        self.access: dict[str, AccessGrant] = {}
        self.refresh: dict[str, RefreshGrant] = {}
        self.faults = Faults()
        self.random = random.Random(seed)
        self.requests = 0
        self._expire_count = 0
        self.lock = threading.RLock()
        self.wakeup = threading.Event()  # set when an event is queued, so the deliverer runs

    # -- setup ------------------------------------------------------------------------------------------------
    def add_portal(
        self,
        domain: str,
        *,
        member_id: str | None = None,
        burst: float = 50,
        rate: float = 2.0,
        tz: timezone = UTC,
    ) -> Portal:
        """A portal; with a ``base_url`` its REST endpoint is ``{base_url}/{domain}/rest/`` so tenants can share
        one listening socket (a real portal is ``https://{domain}/rest/``)."""
        endpoint = f"{self.base_url}/{domain}/rest/" if self.base_url else None
        portal = Portal(
            domain,
            self.clock,
            member_id=member_id,
            client_endpoint=endpoint,
            fetch=lambda url: self.fetch(url),
            allow_private_record_urls=self.allow_private_record_urls,
            burst=burst,
            drain_per_second=rate,
            tz=tz,
        )
        portal.server_endpoint = self.oauth_server_endpoint
        with self.lock:
            self.portals[domain] = portal
        return portal

    def add_app(self, app: App) -> App:
        with self.lock:
            self.apps[app.client_id] = app
        return app

    def portal(self, domain: str) -> Portal:
        try:
            return self.portals[domain]
        except KeyError:
            raise KeyError(f"no portal {domain!r}") from None

    # -- tokens -----------------------------------------------------------------------------------------------
    def issue(self, domain: str, client_id: str, user_id: int) -> dict[str, Any]:
        """A fresh token pair, as the OAuth server returns it (DOC settings/oauth/index.md)."""
        now = self.clock.now()
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        with self.lock:
            self.access[access] = AccessGrant(domain, client_id, user_id, now + self.access_ttl)
            self.refresh[refresh] = RefreshGrant(domain, client_id, user_id, now + REFRESH_TTL)
        portal = self.portals[domain]
        app = self.apps[client_id]
        return {
            "access_token": access,
            "client_endpoint": portal.client_endpoint,
            "domain": "oauth.bitrix.info",
            "expires": int(now + self.access_ttl),
            "expires_in": int(self.access_ttl),
            "member_id": portal.member_id,
            "refresh_token": refresh,
            "scope": ",".join(app.scope),
            "server_endpoint": self.oauth_server_endpoint,
            "status": "L",
            "user_id": user_id,
        }

    def expire_all_tokens(self) -> int:
        """Every access token issued so far is expired from now on (refresh tokens still work)."""
        now = self.clock.now()
        with self.lock:
            for grant in self.access.values():
                grant.expires_at = min(grant.expires_at, now - 1)
            return len(self.access)

    def oauth_token(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``/oauth/token/``: ``grant_type=refresh_token`` with rotation (DOC settings/oauth/index.md; §A3)."""
        try:
            return 200, self._refresh(params)
        except OAuthError as exc:
            return exc.status, exc.body

    def _refresh(self, params: dict[str, str]) -> dict[str, Any]:
        grant_type = params.get("grant_type", "")
        if grant_type != "refresh_token":
            raise OAuthError(400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"})
        app = self.apps.get(params.get("client_id", ""))
        if app is None:
            raise OAuthError(200, {"error": "wrong_client"})  # 200, as b24pysdk documents it
        if params.get("client_secret", "") != app.client_secret:
            raise OAuthError(400, {"error": "invalid_client"})
        token = params.get("refresh_token", "")
        if not token:
            raise OAuthError(
                400, {"error": "invalid_request", "error_description": 'No "refresh_token" parameter found'}
            )
        with self.lock:
            grant = self.refresh.get(token)
            if (
                grant is None
                or grant.used
                or grant.client_id != app.client_id
                or grant.expires_at <= self.clock.now()
                or grant.domain not in self.portals
                or app.client_id not in self.portals[grant.domain].installations
            ):
                raise OAuthError(400, {"error": "invalid_grant"})
            grant.used = True  # rotation: the old refresh token is dead now (DOC auto-renewal.md)
            return self.issue(grant.domain, grant.client_id, grant.user_id)

    # -- install flow (DOC settings/app-installation/*, protocols.md §A2) --------------------------------------
    def install(self, domain: str, client_id: str, user_id: int = 1) -> tuple[Installation, dict[str, Any]]:
        """Install ``client_id`` on ``domain`` as admin ``user_id``; returns the installation and tokens.

        An API-only app gets ONAPPINSTALL (with tokens) posted to its handler URL and counts as installed at
        once; an app with UI gets its install page posted and is installed only after :meth:`install_finish`.
        """
        portal = self.portal(domain)
        app = self.apps[client_id]
        with portal.lock:
            inst = Installation(
                client_id=client_id,
                app_id=app.app_id,
                app_name=app.name,
                scope=list(app.scope),
                application_token=secrets.token_hex(16),
                installed=not app.has_ui,
            )
            portal.installations[client_id] = inst
            portal.bindings = [b for b in portal.bindings if b.client_id != client_id]
            tokens = self.issue(domain, client_id, user_id)
            if app.handler_url:
                if app.has_ui:
                    query = f"DOMAIN={domain}&PROTOCOL=1&LANG=en&APP_SID={secrets.token_hex(16)}"
                    sep = "&" if "?" in app.handler_url else "?"
                    form = {
                        "AUTH_ID": tokens["access_token"],
                        "AUTH_EXPIRES": str(tokens["expires_in"]),
                        "REFRESH_ID": tokens["refresh_token"],
                        "SERVER_ENDPOINT": self.oauth_server_endpoint,
                        "APPLICATION_TOKEN": inst.application_token,
                        "APPLICATION_SCOPE": ",".join(app.scope),
                        "member_id": portal.member_id,
                        "status": "L",
                        "PLACEMENT": "DEFAULT",
                        "PLACEMENT_OPTIONS": "{}",
                    }
                    portal.outbox.append(
                        out := OutgoingEvent(0, app.handler_url + sep + query, "INSTALL_PAGE", form, self.clock.now())
                    )
                    portal.events.append(out)
                else:
                    auth = self._auth_block(portal, inst, tokens, with_refresh=True)
                    data = {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}
                    portal.push(app.handler_url, "ONAPPINSTALL", data, auth, None)
        self.wakeup.set()
        return inst, tokens

    def install_finish(self, domain: str, client_id: str) -> None:
        """What the install page's ``BX24.installFinish()`` does (DOC installation-finish.md)."""
        portal = self.portal(domain)
        with portal.lock:
            portal.installations[client_id].installed = True

    def uninstall(self, domain: str, client_id: str) -> None:
        """ONAPPUNINSTALL carries no tokens, only ``application_token`` (DOC common/events/on-app-uninstall.md)."""
        portal = self.portal(domain)
        with portal.lock:
            inst = portal.installations.get(client_id)
            if inst is None:
                return
            portal.emit(
                "ONAPPUNINSTALL", {"LANGUAGE_ID": "en", "CLEAN": "0"}, self._auth_block(portal, inst, None), client_id
            )
            del portal.installations[client_id]
            portal.bindings = [b for b in portal.bindings if b.client_id != client_id]
        with self.lock:
            for token, grant in list(self.access.items()):
                if grant.domain == domain and grant.client_id == client_id:
                    del self.access[token]
            for token, rgrant in list(self.refresh.items()):
                if rgrant.domain == domain and rgrant.client_id == client_id:
                    del self.refresh[token]
        self.wakeup.set()

    def _auth_block(
        self, portal: Portal, inst: Installation, tokens: dict[str, Any] | None, with_refresh: bool = False
    ) -> dict[str, Any]:
        """``auth[...]`` of an event (DOC _includes/auth-params-in-events.md)."""
        auth: dict[str, Any] = {}
        if tokens is not None:
            auth["access_token"] = tokens["access_token"]
            auth["expires_in"] = str(tokens["expires_in"])
            auth["scope"] = ",".join(inst.scope)
        auth["domain"] = portal.domain
        auth["server_endpoint"] = self.oauth_server_endpoint
        auth["status"] = "L"
        auth["client_endpoint"] = portal.client_endpoint
        auth["member_id"] = portal.member_id
        if tokens is not None and with_refresh:
            auth["refresh_token"] = tokens["refresh_token"]
        auth["application_token"] = inst.application_token
        return auth

    # -- things people do in the portal ------------------------------------------------------------------------
    def _telephony_app(self, portal: Portal, event: str) -> Installation | None:
        """The app chosen as the default outgoing line: the first installed app bound to ``event``."""
        for binding in portal.bindings:
            inst = portal.installations.get(binding.client_id)
            if binding.event == event and inst is not None and inst.installed:
                return inst
        return None

    def click_to_call(
        self, domain: str, user_id: int, phone: str, *, crm_entity_type: str = "", crm_entity_id: int = 0
    ) -> str | None:
        """A user clicks a phone number: Bitrix24 registers the call and sends ONEXTERNALCALLSTART with that
        CALL_ID (DOC telephony/events/on-external-call-start.md). Returns the CALL_ID, None without a handler."""
        portal = self.portal(domain)
        with portal.lock:
            inst = self._telephony_app(portal, "ONEXTERNALCALLSTART")
            if inst is None:
                return None
            line = next(iter(inst.lines), "")
            params: dict[str, Any] = {"USER_ID": user_id, "PHONE_NUMBER": phone, "TYPE": 1, "LINE_NUMBER": line}
            if crm_entity_type and crm_entity_id:
                params |= {"CRM_ENTITY_TYPE": crm_entity_type, "CRM_ENTITY_ID": crm_entity_id}
            call, result = portal.register(inst.client_id, params, click_to_call=True)
            data = {
                "PHONE_NUMBER": phone,
                "PHONE_NUMBER_INTERNATIONAL": international(phone),
                "EXTENSION": "",
                "USER_ID": str(user_id),
                "CALL_LIST_ID": "0",
                "LINE_NUMBER": line,
                "IS_MOBILE": "0",
                "CALL_ID": call.call_id,
                "CRM_ENTITY_TYPE": str(result.get("CRM_ENTITY_TYPE") or ""),
                "CRM_ENTITY_ID": str(result.get("CRM_ENTITY_ID") or ""),
            }
            tokens = self.issue(domain, inst.client_id, user_id)
            portal.emit(
                "ONEXTERNALCALLSTART",
                data,
                self._auth_block(portal, inst, tokens),
                inst.client_id,
                tokens_for=lambda client_id, uid: self.issue(domain, client_id, uid),
            )
        self.wakeup.set()
        return call.call_id

    def order_callback(self, domain: str, phone: str, text: str = "", line: str = "") -> bool:
        """A CRM web form orders a callback: ONEXTERNALCALLBACKSTART without a CALL_ID
        (DOC telephony/events/on-external-call-back-start.md)."""
        portal = self.portal(domain)
        with portal.lock:
            inst = self._telephony_app(portal, "ONEXTERNALCALLBACKSTART")
            if inst is None:
                return False
            matches = portal.find_by_phone(phone)
            data = {
                "PHONE_NUMBER": phone,
                "TEXT": text or "A callback has been ordered from the website",
                "VOICE": "ruinternalfemale",
                "CRM_ENTITY_TYPE": matches[0].type if matches else "",
                "CRM_ENTITY_ID": str(matches[0].id) if matches else "",
                "LINE_NUMBER": line or next(iter(inst.lines), ""),
            }
            tokens = self.issue(domain, inst.client_id, 1)
            portal.emit(
                "ONEXTERNALCALLBACKSTART",
                data,
                self._auth_block(portal, inst, tokens),
                inst.client_id,
                tokens_for=lambda client_id, uid: self.issue(domain, client_id, uid),
            )
        self.wakeup.set()
        return True

    def pending_events(self) -> list[tuple[Portal, OutgoingEvent]]:
        out: list[tuple[Portal, OutgoingEvent]] = []
        for portal in list(self.portals.values()):
            out.extend((portal, ev) for ev in portal.take_outbox())
        return out

    # -- REST -------------------------------------------------------------------------------------------------
    def in_outage(self) -> bool:
        return self.faults.outage_until > self.clock.now()

    def rest(
        self, domain: str | None, method: str, params: dict[str, Any], webhook: tuple[int, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One REST request. ``domain`` is the portal the URL names (None: the token decides); ``webhook`` is
        ``(user_id, code)`` of an incoming-webhook URL."""
        started = time.time()
        try:
            result = self._rest(domain, method, params, webhook)
        except RestError as exc:
            return exc.status, exc.body()
        body: dict[str, Any] = {"result": result.value}
        if result.total is not None:
            body["total"] = result.total
        if result.next is not None:
            body["next"] = result.next
        body["time"] = self._time(started)
        return 200, body

    def _time(self, started: float) -> dict[str, Any]:
        """The ``time`` object every answer carries (DOC api-reference/data-types.md#time)."""
        finished = time.time()
        now = self.clock.now()
        return {
            "start": now,
            "finish": now + (finished - started),
            "duration": finished - started,
            "processing": finished - started,
            "date_start": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
            "date_finish": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
            "operating_reset_at": int(now) + 600,
            "operating": 0,
        }

    def _authenticate(self, domain: str | None, params: dict[str, Any]) -> tuple[Portal, Context]:
        token = params.get("auth", params.get("access_token"))
        if not token or not isinstance(token, str):
            raise errors.system(errors.NO_AUTH_FOUND)
        with self.lock:
            grant = self.access.get(token)
            if grant is None or (domain is not None and grant.domain != domain):
                raise errors.system(errors.INVALID_TOKEN)
            self.requests += 1
            every = self.faults.expire_every
            if every:
                self._expire_count += 1
                if self._expire_count >= every:  # this request's token expires "now"
                    self._expire_count = 0
                    grant.expires_at = min(grant.expires_at, self.clock.now() - 1)
            if grant.expires_at <= self.clock.now():
                raise errors.system(errors.EXPIRED_TOKEN)
        portal = self.portals[grant.domain]
        if grant.client_id not in portal.installations:
            raise errors.system(errors.INVALID_TOKEN)
        return portal, Context(grant.client_id, grant.user_id, token)

    def add_webhook(self, domain: str, user_id: int, scope: list[str] | None = None) -> str:
        """An incoming webhook ``/rest/{user_id}/{code}/`` (DOC local-integrations/local-webhooks.md); returns
        the code. Webhooks may not call the app-only methods (``WRONG_AUTH_TYPE``)."""
        portal = self.portal(domain)
        code = secrets.token_hex(8)
        with portal.lock:
            portal.installations[f"webhook:{code}"] = Installation(
                client_id=f"webhook:{code}",
                app_id=0,
                app_name="webhook",
                scope=list(scope or DEFAULT_SCOPE),
                application_token="",
                installed=True,
            )
            portal.webhook_users[code] = user_id
        return code

    def _webhook(self, domain: str | None, user_id: int, code: str) -> tuple[Portal, Context]:
        for portal in self.portals.values():
            if (domain is None or portal.domain == domain) and portal.webhook_users.get(code) == user_id:
                return portal, Context(f"webhook:{code}", user_id, "")
        raise RestError("INVALID_CREDENTIALS", "Invalid request credentials", 401)

    def rename_portal(self, old: str, new: str) -> Portal:
        """The portal's address changes: the old one answers 302 to the new one
        (DOC settings/how-to-call-rest-api/change-domen.md)."""
        with self.lock:
            portal = self.portals.pop(old)
            portal.domain = new
            portal.client_endpoint = f"{self.base_url}/{new}/rest/" if self.base_url else f"https://{new}/rest/"
            self.portals[new] = portal
            self.moved[old] = new
            for grant in self.access.values():
                if grant.domain == old:
                    grant.domain = new
            for rgrant in self.refresh.values():
                if rgrant.domain == old:
                    rgrant.domain = new
        return portal

    def _rest(
        self, domain: str | None, method: str, params: dict[str, Any], webhook: tuple[int, str] | None = None
    ) -> Result:
        if domain is not None and domain not in self.portals:
            raise RestError("PORTAL_DELETED", "Portal was deleted", 403)
        if webhook is not None:
            portal, ctx = self._webhook(domain, *webhook)
        else:
            portal, ctx = self._authenticate(domain, params)
        faults = self.faults
        if faults.rate_limit and not portal.bucket.take():
            raise errors.system(errors.QUERY_LIMIT_EXCEEDED)
        roll = self.random.random()
        if roll < faults.query_limit_rate:
            raise errors.system(errors.QUERY_LIMIT_EXCEEDED)
        if roll < faults.query_limit_rate + faults.server_error_rate:
            raise errors.system(errors.INTERNAL_SERVER_ERROR)
        if roll < faults.query_limit_rate + faults.server_error_rate + faults.operation_limit_rate:
            raise errors.system(errors.OPERATION_TIME_LIMIT)
        params = {k: v for k, v in params.items() if k not in ("auth", "access_token")}
        if faults.fails(method):
            raise errors.system(errors.INTERNAL_SERVER_ERROR)
        if method.lower() == "batch":
            return Result(self._batch(portal, ctx, params))
        try:
            return portal.call(ctx, method, params)
        finally:
            self.wakeup.set()

    def _batch(self, portal: Portal, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        """DOC settings/how-to-call-rest-api/batch.md: ≤50 commands, ``$result[..]`` references, ``halt``.

        The batch counts once against the leaky bucket; sub-command errors go to ``result_error`` and the
        batch itself answers 200. Empty maps are PHP's ``[]``.
        """
        cmd = params.get("cmd", params.get("CMD"))
        if isinstance(cmd, list):
            cmd = {str(i): v for i, v in enumerate(cmd)}
        if not isinstance(cmd, dict):
            cmd = {}  # an empty batch answers empty lists [INFER]
        if len(cmd) > MAX_BATCH:
            raise errors.system(errors.BATCH_LENGTH_EXCEEDED)
        halt = str(params.get("halt", "0")) in ("1", "true", "Y")
        results: dict[str, Any] = {}
        result_error: dict[str, Any] = {}
        totals: dict[str, Any] = {}
        nexts: dict[str, Any] = {}
        times: dict[str, Any] = {}
        for key, line in cmd.items():
            started = time.time()
            method, _, query = str(line).partition("?")
            pairs = [(k, self._substitute(v, results)) for k, v in parse_qsl(query, keep_blank_values=True)]
            sub = parse_php_pairs(pairs)
            sub.pop("auth", None)
            try:
                if method.lower() == "batch":
                    raise errors.system(errors.BATCH_METHOD_NOT_ALLOWED)
                if self.faults.fails(method):
                    raise errors.system(errors.INTERNAL_SERVER_ERROR)
                res = portal.call(ctx, method, sub)
            except RestError as exc:
                result_error[key] = exc.body()
                if halt:
                    break
                continue
            results[key] = res.value
            if res.total is not None:
                totals[key] = res.total
            if res.next is not None:
                nexts[key] = res.next
            times[key] = {k: v for k, v in self._time(started).items() if not k.startswith("operating")}
        self.wakeup.set()
        return {
            "result": _php_array(results),
            "result_error": _php_array(result_error),
            "result_total": _php_array(totals),
            "result_next": _php_array(nexts),
            "result_time": _php_array(times),
        }

    @staticmethod
    def _substitute(value: str, results: dict[str, Any]) -> str:
        """Replace ``$result[cmd][FIELD][0]`` with the earlier result's value; unknown references stay literal
        [INFER: the docs do not say]."""

        def repl(match: re.Match[str]) -> str:
            node: Any = results.get(match.group(1))
            if node is None:
                return match.group(0)
            for part in re.findall(r"\[([^\]]*)\]", match.group(2)):
                if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                elif isinstance(node, dict) and part in node:
                    node = node[part]
                else:
                    return match.group(0)
            if isinstance(node, bool):
                return "1" if node else ""
            return "" if node is None else str(node)

        return _RESULT_REF.sub(repl, value)
