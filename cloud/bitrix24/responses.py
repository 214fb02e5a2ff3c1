"""What a Bitrix24 answer means, without I/O: status + body → one :class:`Answer` the client acts on.

Codes and statuses from protocols.md §A1.3/§A1.4 (``_includes/system-errors.md``), compared case-insensitively
as both official SDKs do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["AUTH_LOST_CODES", "Answer", "classify", "is_read_only"]

Kind = Literal[
    "ok", "expired", "rate_limited", "operation_limit", "unavailable", "auth_lost", "method_error", "redirect"
]

#: The app lost access: only the portal's admin can fix these (reinstall, pay); retrying is pointless.
AUTH_LOST_CODES = frozenset(
    code.lower()
    for code in (
        "invalid_token",
        "NO_AUTH_FOUND",
        "authorization_error",
        "APPLICATION_NOT_FOUND",
        "NOT_INSTALLED",
        "ERROR_OAUTH",
        "PAYMENT_REQUIRED",
        "PORTAL_DELETED",
    )
)
#: How long an OPERATION_TIME_LIMIT lasts when the answer does not say (the 10-minute window drains per minute).
OPERATION_LIMIT_RETRY_AFTER = 60.0
_READ_PREFIXES = ("get", "list", "search", "find", "fields")
_READ_METHODS = frozenset({"app.info", "scope", "methods", "method.get", "user.current", "profile", "server.time"})


@dataclass(frozen=True)
class Answer:
    kind: Kind
    result: Any = None
    total: int | None = None
    next: int | None = None
    code: str = ""
    description: str = ""
    status: int = 0
    location: str = ""
    maybe_executed: bool = True
    retry_after: float = 0.0


def is_read_only(method: str) -> bool:
    """Safe to send twice: ``*.get``/``*.list``/``*.search*``/``*.find*`` and a few info methods [INFER from the
    REST naming convention; every writing method the integration uses is add/register/finish/show/bind...]."""
    name = method.lower().removesuffix(".json")
    return name in _READ_METHODS or name.rsplit(".", 1)[-1].startswith(_READ_PREFIXES)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def classify(status: int, body: bytes, *, location: str | None = None, now: float = 0.0) -> Answer:
    """Sort one HTTP answer of the portal's REST."""
    if status in (301, 302, 303, 307, 308):
        if location:
            return Answer("redirect", status=status, location=location)
        return Answer("unavailable", status=status, code=f"HTTP {status} without Location", maybe_executed=False)
    data = _json(body)
    if isinstance(data, dict) and "error" in data and "result" not in data:
        code = str(data.get("error") or "")
        description = str(data.get("error_description") or "")
        lower = code.lower()
        if lower == "expired_token":
            return Answer("expired", status=status, code=code, description=description, maybe_executed=False)
        if lower in AUTH_LOST_CODES:
            return Answer("auth_lost", status=status, code=code, description=description, maybe_executed=False)
        if lower == "query_limit_exceeded":  # refused before execution (DOC limits.md)
            return Answer("rate_limited", status=status, code=code, description=description, maybe_executed=False)
        if lower == "operation_time_limit":
            reset = data.get("time", {}).get("operating_reset_at") if isinstance(data.get("time"), dict) else None
            wait = float(reset) - now if isinstance(reset, int | float) and reset > now else OPERATION_LIMIT_RETRY_AFTER
            return Answer("operation_limit", status=status, code=code, description=description, retry_after=wait)
        if lower == "overload_limit":  # the portal's REST is blocked: refused, not run
            return Answer("unavailable", status=status, code=code, description=description, maybe_executed=False)
        if status >= 500:
            return Answer("unavailable", status=status, code=code, description=description, maybe_executed=True)
        return Answer("method_error", status=status, code=code, description=description)
    if 200 <= status < 300 and isinstance(data, dict) and "result" in data:
        return Answer(
            "ok", status=status, result=data["result"], total=_int(data.get("total")), next=_int(data.get("next"))
        )
    # A proxy's HTML page, an empty or truncated body: the request may have run behind it.
    return Answer("unavailable", status=status, code=f"HTTP {status} without a REST answer", maybe_executed=True)
