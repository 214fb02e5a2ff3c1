"""Chalice glue for the settings pages: request → :mod:`cloud.webapp.page` / :mod:`cloud.webapp.api` →
``Response``. Every API answer is JSON; every failure has a status and a ``code`` the page understands."""

from __future__ import annotations

import json
import logging
from typing import Any

from chalice.app import Request, Response

from cloud.runtime import Runtime

from . import api, page
from .auth import MEMBER_HEADER, authenticate, bearer_token
from .errors import BadRequest, WebError

__all__ = ["API_CONTENT_TYPES", "MAX_BODY", "PAGE_CONTENT_TYPES", "api_route", "page_route", "static_route"]

log = logging.getLogger("cloud.webapp.routes")

#: Bitrix24 posts the page as a form; a GET (someone opening the URL by hand) gets an explanation.
PAGE_CONTENT_TYPES = ["application/x-www-form-urlencoded", "application/json", "multipart/form-data"]
API_CONTENT_TYPES = ["application/json"]
MAX_BODY = 256 * 1024


def _raw(request: Request) -> bytes:
    raw = request.raw_body
    return raw if isinstance(raw, bytes) else (raw or "").encode("utf-8")


def _json_response(status: int, body: dict[str, Any]) -> Response:
    headers: dict[str, str | list[str]] = {**page.HEADERS, "Content-Type": "application/json"}
    return Response(body=json.dumps(body, ensure_ascii=False), status_code=status, headers=headers)


def page_route(rt: Runtime, request: Request | None) -> Response:
    if request is None:
        return _json_response(400, {"error": "bad_request", "message": "no request"})
    query = {str(k): str(v) for k, v in (request.query_params or {}).items()}
    body = _raw(request) if request.method == "POST" else b""
    answer = page.render_page(rt, query, body, request.headers.get("content-type", ""))
    return Response(
        body=answer.body, status_code=answer.status, headers={**page.HEADERS, "Content-Type": answer.content_type}
    )


def static_route(name: str) -> Response:
    found = page.static_file(name)
    if found is None:
        return Response(body="not found", status_code=404, headers={"Content-Type": "text/plain"})
    content, content_type = found
    return Response(
        body=content,
        status_code=200,
        headers={"Content-Type": content_type, "Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )


def _body(request: Request) -> Any:
    if request.method not in ("POST", "PATCH", "PUT"):
        return None
    raw = _raw(request)
    if len(raw) > MAX_BODY:
        raise BadRequest(f"the body is larger than {MAX_BODY} bytes")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON") from None


def api_route(rt: Runtime, request: Request | None, section: str, item: str | None = None) -> Response:
    """Authenticate (the ``Authorization`` and member headers only), then run the section."""
    if request is None:
        return _json_response(400, {"error": "bad_request", "message": "no request"})
    try:
        viewer = authenticate(rt, request.headers.get(MEMBER_HEADER), bearer_token(request.headers))
        query = {str(k): str(v) for k, v in (request.query_params or {}).items()}
        api_request = api.ApiRequest(request.method, section, item, query, _body(request))
        return _json_response(200, api.handle(rt, viewer, api_request))
    except api.InvalidFields as exc:
        return _json_response(exc.status, {"error": exc.code, "message": exc.message, "fields": exc.fields})
    except WebError as exc:
        return _json_response(exc.status, {"error": exc.code, "message": exc.message})
    except Exception:
        log.exception("settings API %s %s failed", request.method, section)
        return _json_response(500, {"error": "internal", "message": "the server failed; retry later"})
