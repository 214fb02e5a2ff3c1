"""The errors a portal and its OAuth server answer with, with the exact strings from the docs.

Sources: DOC _includes/system-errors.md (system errors), settings/oauth/index.md and the SDKs (OAuth errors),
and each method's own page (method errors); see protocols.md §A1.4 and §A3.
"""

from __future__ import annotations

from typing import Any


class RestError(Exception):
    """A REST error: rendered as ``{"error": code, "error_description": description}`` with ``status``."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.description}


def core_error(description: str) -> RestError:
    """``ERROR_CORE`` is what the telephony methods use for their own rule violations (DOC telephony/*.md)."""
    return RestError("ERROR_CORE", description, 400)


# DOC _includes/system-errors.md
NO_AUTH_FOUND = ("NO_AUTH_FOUND", "Wrong authorization data", 401)
EXPIRED_TOKEN = ("expired_token", "The access token provided has expired.", 401)
# The docs table omits invalid_token; the text is the one portals send (rest module source, b24pysdk errors).
INVALID_TOKEN = ("invalid_token", "Unable to get application by token", 401)
INSUFFICIENT_SCOPE = (
    "insufficient_scope",
    "The request requires higher privileges than provided by the access token",
    401,
)
METHOD_NOT_FOUND = ("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
QUERY_LIMIT_EXCEEDED = ("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)
OPERATION_TIME_LIMIT = ("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429)
INTERNAL_SERVER_ERROR = ("INTERNAL_SERVER_ERROR", "Internal server error", 500)
BATCH_LENGTH_EXCEEDED = ("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded", 400)
BATCH_METHOD_NOT_ALLOWED = ("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405)


def system(error: tuple[str, str, int]) -> RestError:
    code, description, status = error
    return RestError(code, description, status)


class OAuthError(Exception):
    """An answer of the OAuth server's ``/oauth/token/`` (DOC settings/oauth/index.md; protocols.md §A3)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body
