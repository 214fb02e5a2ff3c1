"""The license server's Chalice app (REST only). Handlers authenticate, parse, and call :mod:`license_server.licenses`.

* ``POST /v1/check`` — backend key: a signed lease for a portal (see ``docs/licensing.md``).
* ``GET /v1/keys`` — no key: the current signing key id and its public key (what the cloud is configured with).
* ``/v1/admin/...`` — admin key: list, show (with usage), issue, extend, change plan, revoke.

Every error is ``{"error": {"code": ..., "message": ...}}`` with the status of its :mod:`license_server.errors`
class; unexpected failures are logged and answered ``internal`` without details.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any

from chalice.app import Chalice, Request, Response

from license_protocol import CheckResponse, encode_public_key
from license_server import api_keys, licenses
from license_server.api_keys import Role
from license_server.errors import BadRequest, LicenseServerError
from license_server.runtime import Runtime
from license_server.settings import Settings

app = Chalice(app_name="pbxlink-license")
app.log.setLevel(logging.INFO)

_override: Runtime | None = None
_MAX_BODY = 16_384


def use_runtime(runtime: Runtime | None) -> None:
    """Make every handler use ``runtime`` (tests, cloud-local); ``None`` goes back to the environment."""
    global _override
    _override = runtime


@lru_cache(maxsize=4)
def _runtime_for(settings: Settings) -> Runtime:
    return Runtime(settings)


def runtime() -> Runtime:
    return _override if _override is not None else _runtime_for(Settings.from_env())


def _request() -> Request:
    request = app.current_request
    if request is None:  # only outside a request (never in a route handler)
        raise RuntimeError("no current request")
    return request


def _json(status: int, body: Any) -> Response:
    return Response(body=json.dumps(body), status_code=status, headers={"Content-Type": "application/json"})


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": {"code": code, "message": message}})


def _handler(role: Role | None) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Authenticate for ``role`` (None: public), then turn results into JSON and errors into error bodies."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Response]:
        @wraps(func)
        def handle(**params: str) -> Response:
            try:
                rt = runtime()
                caller = None
                if role is not None:
                    caller = api_keys.authenticate(rt, _request().headers.get("authorization"), role)
                result = func(rt, caller, **params)
                return result if isinstance(result, Response) else _json(200, result)
            except LicenseServerError as exc:
                if exc.status >= 500:
                    app.log.error("%s: %s", type(exc).__name__, exc)
                    return _error(500, "internal", "the license server is misconfigured; the vendor was alerted")
                return _error(exc.status, exc.code, str(exc))
            except Exception:
                app.log.exception("unexpected failure in %s", func.__name__)
                return _error(500, "internal", "internal error; try again later")

        return handle

    return decorate


def _body() -> Any:
    raw = _request().raw_body or b""
    if len(raw) > _MAX_BODY:
        raise BadRequest(f"body of {len(raw)} bytes; at most {_MAX_BODY}")
    try:
        return json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON") from None


def _int_field(body: Any, name: str, *, required: bool = True) -> int | None:
    value = body.get(name) if isinstance(body, dict) else None
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{name}: a whole number is required")
    return value


def _license_view(lic: licenses.License) -> dict[str, Any]:
    return lic.model_dump(mode="json")


@app.route("/v1/check", methods=["POST"])
@_handler("backend")
def check(rt: Runtime, caller: api_keys.ApiKey) -> dict[str, Any]:
    return CheckResponse(lease=licenses.check(rt, caller, _body())).model_dump()


@app.route("/v1/keys", methods=["GET"])
@_handler(None)
def public_keys(rt: Runtime, caller: None) -> dict[str, Any]:
    kid, key = rt.signing_key
    return {"keys": [{"kid": kid, "alg": "Ed25519", "public_key": encode_public_key(key.public_key())}]}


@app.route("/v1/admin/licenses", methods=["GET"])
@_handler("admin")
def list_licenses(rt: Runtime, caller: api_keys.ApiKey) -> dict[str, Any]:
    return {"licenses": [_license_view(lic) for lic in licenses.list_licenses(rt)]}


@app.route("/v1/admin/licenses", methods=["POST"])
@_handler("admin")
def issue_license(rt: Runtime, caller: api_keys.ApiKey) -> dict[str, Any]:
    body = _body()
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("member_id"), str)
        or not isinstance(body.get("plan"), str)
    ):
        raise BadRequest("issue: member_id and plan (strings) and days (a number) are required")
    lic = licenses.issue(
        rt,
        body["member_id"],
        body["plan"],
        _int_field(body, "days") or 0,
        users_with_cards=_int_field(body, "users_with_cards", required=False),
        agents=_int_field(body, "agents", required=False),
    )
    return _license_view(lic)


@app.route("/v1/admin/licenses/{member_id}", methods=["GET"])
@_handler("admin")
def show_license(rt: Runtime, caller: api_keys.ApiKey, member_id: str) -> dict[str, Any]:
    return _license_view(licenses.get_license(rt, member_id))


@app.route("/v1/admin/licenses/{member_id}/extend", methods=["POST"])
@_handler("admin")
def extend_license(rt: Runtime, caller: api_keys.ApiKey, member_id: str) -> dict[str, Any]:
    return _license_view(licenses.extend(rt, member_id, _int_field(_body(), "days") or 0))


@app.route("/v1/admin/licenses/{member_id}/plan", methods=["POST"])
@_handler("admin")
def change_plan(rt: Runtime, caller: api_keys.ApiKey, member_id: str) -> dict[str, Any]:
    body = _body()
    if not isinstance(body, dict) or not isinstance(body.get("plan"), str):
        raise BadRequest("plan: a string is required")
    lic = licenses.change_plan(
        rt,
        member_id,
        body["plan"],
        users_with_cards=_int_field(body, "users_with_cards", required=False),
        agents=_int_field(body, "agents", required=False),
    )
    return _license_view(lic)


@app.route("/v1/admin/licenses/{member_id}/revoke", methods=["POST"])
@_handler("admin")
def revoke_license(rt: Runtime, caller: api_keys.ApiKey, member_id: str) -> dict[str, Any]:
    return _license_view(licenses.revoke(rt, member_id))
