"""Every error the license server raises on purpose; each carries the HTTP status and the wire error code.

::

    LicenseServerError              anything raised deliberately (status, code)
    ├── ConfigError                 a setting is missing or malformed (500 internal, message logged)
    ├── BadRequest                  400 bad_request: the body does not fit the model
    ├── StaleRequest                400 stale_request: sent_at outside the replay window
    ├── Unauthenticated             401 unauthenticated: no key or an unknown/revoked key
    ├── Forbidden                   403 forbidden: a known key of the wrong role
    ├── LicenseNotFound             404 not_found
    ├── Replayed                    409 replayed: the nonce was already used for this portal
    └── LicenseDenied               403: the portal's license does not allow a lease
        ├── LicenseRevoked          license_revoked
        └── LicenseExpired          license_expired
"""

from __future__ import annotations

from typing import ClassVar

from license_protocol import ErrorCode

__all__ = [
    "BadRequest",
    "ConfigError",
    "Forbidden",
    "LicenseDenied",
    "LicenseExpired",
    "LicenseNotFound",
    "LicenseRevoked",
    "LicenseServerError",
    "Replayed",
    "StaleRequest",
    "Unauthenticated",
]


class LicenseServerError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[ErrorCode] = "internal"


class ConfigError(LicenseServerError):
    """A setting (environment variable) is missing or malformed; the message names it."""


class BadRequest(LicenseServerError):
    status, code = 400, "bad_request"


class StaleRequest(LicenseServerError):
    status, code = 400, "stale_request"


class Unauthenticated(LicenseServerError):
    status, code = 401, "unauthenticated"


class Forbidden(LicenseServerError):
    status, code = 403, "forbidden"


class LicenseNotFound(LicenseServerError):
    status, code = 404, "not_found"


class Replayed(LicenseServerError):
    status, code = 409, "replayed"


class LicenseDenied(LicenseServerError):
    status = 403


class LicenseRevoked(LicenseDenied):
    code = "license_revoked"


class LicenseExpired(LicenseDenied):
    code = "license_expired"
