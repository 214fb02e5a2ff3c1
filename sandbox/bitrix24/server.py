"""HTTP around the emulator: REST, the OAuth server, event delivery, the control API and the web page.

Routes (a real portal is ``https://{domain}/rest/…``; here tenants share one socket, so the domain is a path
prefix, or the ``Host`` header, or is taken from the token):

* ``GET|POST /rest/{method}[.json]`` and ``/{domain}/rest/{method}[.json]`` — REST (DOC general-principles.md)
* ``POST /{domain}/rest/upload.json?auth=…&token=…`` — attachRecord's upload step (multipart, field ``file``)
* ``GET|POST /oauth/token/`` — the OAuth server (DOC settings/oauth/index.md)
* ``/_emulator/…`` — control API (faults, click-to-call, install), never affected by faults
* ``GET /`` and ``GET /portal/{domain}`` — the portal as a person sees it
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from sandbox.bitrix24 import web
from sandbox.bitrix24.emulator import App, Emulator
from sandbox.bitrix24.errors import RestError
from sandbox.bitrix24.forms import build_php_query, parse_php_query
from sandbox.bitrix24.portal import OutgoingEvent, Portal, User, complete_upload

log = logging.getLogger("sandbox.bitrix24")

OUTAGE_PAGE = b"<html><head><title>503 Service Temporarily Unavailable</title></head><body>503</body></html>"
FAULT_FIELDS = {
    "latency": float,
    "query_limit_rate": float,
    "server_error_rate": float,
    "operation_limit_rate": float,
    "expire_every": int,
    "outage_mode": str,
    "duplicate_events": bool,
    "event_delay": float,
    "event_loss_rate": float,
    "rate_limit": bool,
}


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in {"1", "true", "y", "yes", "on"}


def apply_faults(emulator: Emulator, changes: dict[str, Any]) -> dict[str, Any]:
    """Set fault knobs from a JSON/form mapping; ``outage_seconds`` starts an outage, ``expire_tokens_now``
    expires every access token. Unknown keys raise ``ValueError``."""
    faults = emulator.faults
    for key, value in changes.items():
        if key == "outage_seconds":
            faults.outage_until = emulator.clock.now() + float(value)
        elif key == "expire_tokens_now":
            if _bool(value):
                emulator.expire_all_tokens()
        elif key in FAULT_FIELDS:
            kind = FAULT_FIELDS[key]
            setattr(faults, key, _bool(value) if kind is bool else kind(value))
        else:
            raise ValueError(f"unknown fault knob {key!r}")
    return faults.as_dict()


class _Handler(BaseHTTPRequestHandler):
    server_version = "nginx"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment and without Nagle: otherwise a keep-alive client waits for the
    # delayed ACK (~40 ms a request on Linux), which would swamp the ring-to-card latency being measured.
    disable_nagle_algorithm = True
    wbufsize = -1
    emulator: Emulator

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _params(self, body: bytes) -> dict[str, Any]:
        """Query, then body (JSON object or PHP-bracket form) — where Bitrix24 reads ``auth`` and arguments."""
        params = parse_php_query(urlsplit(self.path).query)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if body and ctype == "application/json":
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if isinstance(data, dict):
                params.update(data)
        elif body and ctype != "multipart/form-data":
            params.update(parse_php_query(body.decode("utf-8", "replace")))
        return params

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _html(self, text: str, status: int = 200) -> None:
        self._send(status, text.encode(), "text/html; charset=utf-8")

    def _redirect(self, location: str) -> None:
        self._send(303, b"", "text/plain", {"Location": location})

    # -- routing ----------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._route(b"")

    def do_HEAD(self) -> None:
        self._route(b"")

    def do_POST(self) -> None:
        self._route(self._body())

    def _route(self, body: bytes) -> None:
        try:
            self._dispatch(body)
        except (ConnectionError, TimeoutError):
            raise
        except Exception:
            # An emulator bug must look like what a portal sends when it breaks, not like a dropped connection.
            log.exception("emulator error on %s %s", self.command, self.path)
            self._json(500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"})

    def _dispatch(self, body: bytes) -> None:
        path = urlsplit(self.path).path
        parts = [unquote(p) for p in path.split("/") if p]
        em = self.emulator
        if parts[:1] == ["_emulator"]:
            return self._control(parts[1:], body)
        if not parts:
            return self._html(web.index(em))
        if parts[0] == "portal" and len(parts) == 2 and parts[1] in em.portals:
            return self._html(web.portal_page(em, em.portals[parts[1]]))
        if len(parts) > 1 and parts[1] == "rest" and parts[0] in em.moved:
            # a renamed portal answers 302 to its new address (DOC settings/how-to-call-rest-api/change-domen.md)
            query = urlsplit(self.path).query
            location = f"{em.base_url}/{em.moved[parts[0]]}/" + "/".join(parts[1:]) + (f"?{query}" if query else "")
            return self._send(302, b"", "text/html", {"Location": location})
        if parts[0] in ("rest", "oauth") or (len(parts) > 1 and parts[1] == "rest"):
            if em.in_outage():
                if em.faults.outage_mode == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                return self._send(503, OUTAGE_PAGE, "text/html")
            if em.faults.latency > 0:
                time.sleep(em.faults.latency)
        if parts[0] == "oauth" and parts[1:2] == ["token"]:
            params = {k: str(v) for k, v in self._params(body).items()}
            status, data = em.oauth_token(params)
            return self._json(status, data)
        domain: str | None = None
        if parts[0] != "rest" and len(parts) > 2 and parts[1] == "rest":
            domain, parts = parts[0], parts[1:]
        host = (self.headers.get("Host") or "").split(":")[0]
        if domain is None and host in em.portals:
            domain = host
        if parts[0] == "rest" and len(parts) == 4 and parts[1].isdigit():  # /rest/{user_id}/{code}/{method}
            method = parts[3].removesuffix(".json")
            status, data = em.rest(domain, method, self._params(body), webhook=(int(parts[1]), parts[2]))
            return self._json(status, data)
        if parts[0] == "rest" and len(parts) == 2:
            method = parts[1]
            if method.lower().endswith(".json"):
                method = method[: -len(".json")]
            if method.lower() == "upload":
                return self._upload(domain, body)
            status, data = em.rest(domain, method, self._params(body))
            return self._json(status, data)
        if parts[0] == "rest":
            return self._json(401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"})
        return self._html(web.not_found(), 404)

    def _upload(self, domain: str | None, body: bytes) -> None:
        """attachRecord's second step (DOC telephony-external-call-attach-record.md, disk-folder-upload-file.md)."""
        em = self.emulator
        params = parse_php_query(urlsplit(self.path).query)
        status, check = em.rest(domain, "app.info", {"auth": params.get("auth", "")})
        if status != 200:
            return self._json(status, check)
        grant = em.access[str(params.get("auth"))]
        portal = em.portals[grant.domain]
        ctype = self.headers.get("Content-Type") or ""
        message = BytesParser(policy=default_policy).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
        )
        content: bytes = b""
        name = ""
        if message.is_multipart():
            for part in message.iter_parts():
                if part.get_param("name", header="content-disposition") == "file":
                    payload = part.get_payload(decode=True)
                    content = payload if isinstance(payload, bytes) else b""
                    name = part.get_filename() or ""
        try:
            rec = complete_upload(portal, str(params.get("token", "")), name, content)
        except RestError as exc:
            return self._json(exc.status, exc.body())
        return self._json(200, {"result": {"FILE_ID": rec.id}, "time": em._time(time.time())})

    # -- control API ------------------------------------------------------------------------------------------
    def _control(self, parts: list[str], body: bytes) -> None:
        em = self.emulator
        params = self._params(body)
        from_browser = "text/html" in (self.headers.get("Accept") or "")
        try:
            if parts == ["state"]:
                return self._json(200, web.state(em))
            if parts == ["faults"]:
                if self.command == "POST":
                    faults = apply_faults(em, params)
                    return self._redirect("/") if from_browser else self._json(200, faults)
                return self._json(200, em.faults.as_dict())
            if parts == ["expire_tokens"]:
                return self._json(200, {"expired": em.expire_all_tokens()})
            if len(parts) == 3 and parts[0] == "files" and parts[1] in em.portals:
                rec = em.portals[parts[1]].files.get(int(parts[2]))
                if rec is None:
                    return self._json(404, {"error": "not found"})
                ctype = "audio/mpeg" if rec.name.lower().endswith(".mp3") else "audio/wav"
                return self._send(200, rec.content, ctype)
            if len(parts) == 3 and parts[0] == "portals" and parts[1] in em.portals and parts[2] == "audit":
                return self._json(200, em.portals[parts[1]].audit())
            if parts == ["portals"] and self.command == "POST":
                portal = em.add_portal(str(params["domain"]), member_id=params.get("member_id") or None)
                return self._json(200, {"domain": portal.domain, "member_id": portal.member_id})
            if parts == ["apps"] and self.command == "POST":
                app = em.add_app(
                    App(
                        str(params["client_id"]),
                        str(params["client_secret"]),
                        handler_url=str(params.get("handler_url", "")),
                        has_ui=_bool(params.get("has_ui", False)),
                    )
                )
                return self._json(200, {"client_id": app.client_id})
            if len(parts) == 3 and parts[0] == "portals" and parts[1] in em.portals and self.command == "POST":
                return self._portal_action(em.portals[parts[1]], parts[2], params, from_browser)
        except (ValueError, KeyError) as exc:
            return self._json(400, {"error": str(exc)})
        return self._json(404, {"error": "unknown control path"})

    def _portal_action(self, portal: Portal, action: str, params: dict[str, Any], from_browser: bool) -> None:
        em = self.emulator
        result: Any
        if action == "users":
            user = User(
                int(params["id"]),
                str(params.get("name", "")),
                str(params.get("last_name", "")),
                email=str(params.get("email", "")),
                phone_inner=str(params["phone_inner"]) if params.get("phone_inner") else None,
                active=_bool(params.get("active", True)),
                admin=_bool(params.get("admin", False)),
            )
            portal.add_user(user)
            result = user.rest()
        elif action in ("contacts", "leads"):
            fields = dict(params.get("fields") or {})
            if params.get("phone"):
                fields["PHONE"] = [{"VALUE": str(params["phone"]), "VALUE_TYPE": "WORK"}]
            if params.get("name"):
                fields.setdefault("NAME", str(params["name"]))
            entity = portal.add_contact(fields) if action == "contacts" else portal.add_lead(fields)
            result = {"ID": entity.id}
        elif action == "webhook":
            result = {"code": em.add_webhook(portal.domain, int(params.get("user_id") or 1))}
        elif action == "click":
            result = {
                "CALL_ID": em.click_to_call(
                    portal.domain,
                    int(params["user_id"]),
                    str(params["phone"]),
                    crm_entity_type=str(params.get("crm_entity_type", "")),
                    crm_entity_id=int(params.get("crm_entity_id") or 0),
                )
            }
        elif action == "callback":
            result = {"sent": em.order_callback(portal.domain, str(params["phone"]), line=str(params.get("line", "")))}
        elif action == "install":
            inst, tokens = em.install(portal.domain, str(params["client_id"]), int(params.get("user_id") or 1))
            result = {"application_token": inst.application_token, **tokens}
        elif action == "install_finish":
            em.install_finish(portal.domain, str(params["client_id"]))
            result = {"installed": True}
        elif action == "uninstall":
            em.uninstall(portal.domain, str(params["client_id"]))
            result = {"uninstalled": True}
        else:
            return self._json(404, {"error": f"unknown action {action!r}"})
        if from_browser:
            return self._redirect(f"/portal/{portal.domain}")
        return self._json(200, result)


class EventDeliverer:
    """Posts queued events to handlers as ``application/x-www-form-urlencoded`` (DOC api-reference/events/index.md):
    one POST each, no retries; with the ``duplicate_events`` knob, twice."""

    def __init__(self, emulator: Emulator, timeout: float = 5.0) -> None:
        self.emulator = emulator
        self.timeout = timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="b24-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.emulator.wakeup.set()
        self._thread.join(timeout=self.timeout + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.emulator.wakeup.wait(timeout=0.2)
            self.emulator.wakeup.clear()
            self.deliver_pending()

    def deliver_pending(self) -> int:
        count = 0
        faults = self.emulator.faults
        for _portal, event in self.emulator.pending_events():
            if faults.event_loss_rate and self.emulator.random.random() < faults.event_loss_rate:
                event.attempts.append("dropped")
                continue
            if faults.event_delay > 0:
                self._stop.wait(faults.event_delay)
            times = 2 if faults.duplicate_events and event.event != "INSTALL_PAGE" else 1
            for _ in range(times):
                self.post(event)
                count += 1
        return count

    def post(self, event: OutgoingEvent) -> None:
        if event.event == "INSTALL_PAGE":
            data = urlencode(event.payload).encode()  # the install page is a plain form (DOC simple-way.md)
        else:
            data = build_php_query(event.payload).encode()
        request = urllib.request.Request(
            event.url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "Bitrix24 Webhook Engine"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                event.attempts.append(str(response.status))
        except urllib.error.HTTPError as exc:
            event.attempts.append(str(exc.code))
            exc.close()
        except (OSError, ValueError) as exc:
            event.attempts.append(f"error: {exc}")
            log.info("event %s to %s failed: %s", event.event, event.url, exc)


def fetch_url(url: str) -> tuple[int, bytes]:
    """How the portal downloads a RECORD_URL (it must be reachable and fast: DOC attach-record page)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, b""


class EmulatorServer:
    """The emulator on a real socket, with its event deliverer. ``port=0`` picks a free port."""

    def __init__(self, emulator: Emulator | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator or Emulator(fetch=fetch_url)
        handler = type("Handler", (_Handler,), {"emulator": self.emulator})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://{host}:{self.port}"
        self.emulator.base_url = self.url
        for portal in self.emulator.portals.values():
            portal.client_endpoint = f"{self.url}/{portal.domain}/rest/"
        self.deliverer = EventDeliverer(self.emulator)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="b24-http", daemon=True
        )

    def start(self) -> EmulatorServer:
        self._thread.start()
        self.deliverer.start()
        return self

    def stop(self) -> None:
        self.deliverer.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
