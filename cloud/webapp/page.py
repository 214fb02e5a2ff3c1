"""``/b24/app``: the HTML shell Bitrix24 opens in its iframe, and the page's static files.

Bitrix24 POSTs the user's ``AUTH_ID`` and the portal's ``member_id`` (form) with ``DOMAIN``/``LANG``/``APP_SID``
(query) (protocols.md §A2.1). The user is verified before anything is shown (:mod:`cloud.webapp.auth`); the page
then carries the token, the member id and its words in a JSON block (data, never executed; every ``<`` escaped)
that ``static/app.js`` reads, and the script renders everything else from the API. Every URL in the page is
relative, so it works under any stage prefix (``/api/b24/app`` on API Gateway).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from cloud.bitrix24.forms import FormError, parse_body
from cloud.runtime import Runtime

from .auth import authenticate
from .errors import NotAuthenticated, PortalUnreachable
from .i18n import Language, language_of, strings, text

__all__ = ["HEADERS", "STATIC_FILES", "PageAnswer", "render_page", "static_file"]

#: Bitrix24's JS library may be loaded by the script (only inside Bitrix24's frame); nothing else from outside.
CSP = (
    "default-src 'self'; script-src 'self' https://api.bitrix24.com; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": CSP,
}
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class PageAnswer:
    status: int
    body: str
    content_type: str = "text/html; charset=utf-8"


_SHELL = """<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="static/app.css">
</head>
<body>
<main id="app" data-state="loading"><p class="muted">{loading}</p></main>
<script type="application/json" id="pbxlink-config">{config}</script>
<script src="static/app.js"></script>
</body>
</html>
"""

_MESSAGE = """<!DOCTYPE html>
<html lang="{lang}">
<head><meta charset="utf-8"><title>{title}</title><link rel="stylesheet" href="static/app.css"></head>
<body><main id="app" data-state="{state}"><p class="notice">{message}</p></main></body>
</html>
"""


def _json_for_script(value: Any) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment: ``<``, ``>``, ``&`` escaped."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _message(language: Language, status: int, key: str, state: str) -> PageAnswer:
    body = _MESSAGE.format(
        lang=language, title=html.escape(text(language, "title")), message=html.escape(text(language, key)), state=state
    )
    return PageAnswer(status, body)


def render_page(rt: Runtime, query: Mapping[str, str], body: bytes, content_type: str) -> PageAnswer:
    """The page for the user Bitrix24 posted; a short explanation (401/400/503) when it cannot be shown."""
    try:
        form = parse_body(body, content_type) if body else {}
    except FormError:
        form = {}
    language = language_of(str(query.get("LANG") or form.get("LANG") or ""))
    member_id, token = form.get("member_id"), form.get("AUTH_ID")
    if not isinstance(member_id, str) or not isinstance(token, str) or not member_id or not token:
        return _message(language, 400, "page.not_from_b24", "not_from_bitrix24")
    try:
        viewer = authenticate(rt, member_id, token)
    except NotAuthenticated:
        return _message(language, 401, "page.not_from_b24", "unauthenticated")
    except PortalUnreachable:
        return _message(language, 503, "page.unavailable", "unavailable")
    config = {
        "member_id": viewer.tenant,
        "auth": token,
        "lang": language,
        "viewer": viewer.model_dump(),
        "strings": strings(language),
    }
    shell = _SHELL.format(
        lang=language,
        title=html.escape(text(language, "title")),
        loading=html.escape(text(language, "loading")),
        config=_json_for_script(config),
    )
    return PageAnswer(200, shell)


def static_file(name: str) -> tuple[str, str] | None:
    """``(content, content type)`` of one of the page's files; ``None`` for anything else."""
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        return None
    return (resources.files("cloud.webapp").joinpath("static", name).read_text(encoding="utf-8"), content_type)
