"""What a Bitrix24 call can fail with, sorted by what the caller should do about it.

::

    CloudError (cloud.errors)
    └── Bitrix24Error               anything the connector raises deliberately
        ├── MethodError             the portal refused this call (ERROR_CORE "Call is not found...", scope, ...);
        │                           retrying the same call will not help
        ├── RateLimited             QUERY_LIMIT_EXCEEDED / OPERATION_TIME_LIMIT: not executed; retry after
        │                           ``retry_after`` seconds
        ├── PortalUnavailable       5xx, timeout, connection error; ``maybe_executed`` says whether the
        │                           request may have run (then resume the operation, never blindly redo it)
        └── AuthorizationLost       the app lost access to the portal (uninstalled, token revoked, portal
                                    deleted, payment required, refresh refused): needs the portal's admin

Messages never contain tokens: the connector redacts them before building an error.
"""

from __future__ import annotations

from cloud.errors import CloudError

__all__ = ["AuthorizationLost", "Bitrix24Error", "MethodError", "PortalUnavailable", "RateLimited"]


class Bitrix24Error(CloudError):
    """Base of the connector's errors."""


class MethodError(Bitrix24Error):
    """The portal answered the call with an error (``http_status`` is ``None`` inside a batch)."""

    def __init__(self, code: str, description: str, http_status: int | None = None, method: str = "") -> None:
        self.code = code
        self.description = description
        self.http_status = http_status
        self.method = method
        where = f"{method}: " if method else ""
        status = f" (HTTP {http_status})" if http_status is not None else ""
        super().__init__(f"{where}{code or '<no code>'} {description!r}{status}")


class RateLimited(Bitrix24Error):
    """The portal refused the request before running it (rate or operating-time limit)."""

    def __init__(self, retry_after: float, code: str = "QUERY_LIMIT_EXCEEDED", method: str = "") -> None:
        self.retry_after = retry_after
        self.code = code
        self.method = method
        super().__init__(f"{method or 'request'}: {code}; retry after {retry_after:.1f} s")


class PortalUnavailable(Bitrix24Error):
    """The portal (or the OAuth server) did not answer usefully. ``maybe_executed``: the request reached it
    and may have run (5xx, timeout, dropped connection); ``False``: it certainly did not (connection refused)."""

    def __init__(self, reason: str, *, maybe_executed: bool, method: str = "") -> None:
        self.reason = reason
        self.maybe_executed = maybe_executed
        self.method = method
        state = "may have been executed" if maybe_executed else "was not executed"
        super().__init__(f"{method or 'request'}: portal unavailable ({reason}); the request {state}; retry later")


class AuthorizationLost(Bitrix24Error):
    """The app cannot act on this portal any more until its admin reinstalls or pays; do not retry."""

    def __init__(self, tenant: str, reason: str) -> None:
        self.tenant = tenant
        self.reason = reason
        super().__init__(f"tenant {tenant}: authorization lost ({reason}); the portal's admin must reinstall the app")
