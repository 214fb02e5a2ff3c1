"""What the settings API answers when it says no, each with its HTTP status and a stable ``code`` for the page.

::

    CloudError (cloud.errors)
    └── WebError                    status + code + message, answered as JSON
        ├── NotAuthenticated        401: no token, a malformed or unknown one, another portal's, expired
        ├── Forbidden               403: a valid user who is not an administrator of the portal
        ├── BadRequest              400: a body or parameter the API cannot use
        ├── NotFound                404: no such route, agent, ...
        └── PortalUnreachable       503: the portal could not be asked who this is; retry
"""

from __future__ import annotations

from cloud.errors import CloudError

__all__ = ["BadRequest", "Forbidden", "NotAuthenticated", "NotFound", "PortalUnreachable", "WebError"]


class WebError(CloudError):
    status = 500
    code = "internal"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotAuthenticated(WebError):
    status = 401
    code = "unauthenticated"


class Forbidden(WebError):
    status = 403
    code = "forbidden"


class BadRequest(WebError):
    status = 400
    code = "bad_request"


class NotFound(WebError):
    status = 404
    code = "not_found"


class PortalUnreachable(WebError):
    status = 503
    code = "portal_unavailable"
