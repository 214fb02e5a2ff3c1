"""Chalice glue for the Bitrix24 routes: request → (query, raw body, content type), :class:`HttpAnswer` →
``Response``. The logic lives in :mod:`cloud.bitrix24.install` and :mod:`cloud.bitrix24.events`."""

from __future__ import annotations

from chalice.app import Request, Response

from cloud.bitrix24 import events, install
from cloud.bitrix24.install import HttpAnswer
from cloud.runtime import Runtime

__all__ = ["CONTENT_TYPES", "events_route", "install_route"]

#: Bitrix24 posts forms; the JSON view of events is accepted too.
CONTENT_TYPES = ["application/x-www-form-urlencoded", "application/json"]


def _body(request: Request) -> bytes:
    raw = request.raw_body
    return raw if isinstance(raw, bytes) else (raw or "").encode("utf-8")


def _response(answer: HttpAnswer) -> Response:
    return Response(body=answer.body, status_code=answer.status, headers={"Content-Type": answer.content_type})


def _no_request() -> Response:
    return _response(HttpAnswer(400, '{"error": "bad_request", "message": "no request"}'))


def install_route(rt: Runtime, request: Request | None) -> Response:
    """``app.current_request`` is typed optional; inside a route it is always set."""
    if request is None:
        return _no_request()
    query = {str(k): str(v) for k, v in (request.query_params or {}).items()}
    content_type = request.headers.get("content-type", "")
    return _response(install.handle_install(rt, query, _body(request), content_type))


def events_route(rt: Runtime, request: Request | None) -> Response:
    if request is None:
        return _no_request()
    return _response(events.handle_event(rt, _body(request), request.headers.get("content-type", "")))
