"""Why a license check did not produce a lease. None of these ever stops calls: the caller records them and
:func:`cloud.licensing.entitlements` falls back on the cached lease, the grace period, then the free tier.

::

    CloudError
    └── LicensingError                  a license check failed
        ├── LicensingNotConfigured      LICENSE_SERVER_URL / LICENSE_API_KEY / LICENSE_PUBLIC_KEYS missing or malformed
        ├── LicenseServerUnreachable    network error, timeout, 408, 429 or 5xx: try again later (grace applies)
        ├── LicenseCheckFailed          the server refused the request (401/403/400/409) or answered something that
        │                               is not a valid lease for this request: a configuration or clock problem
        └── LicenseDenied               the server answered: the portal's license is revoked or ended (``code``)
"""

from __future__ import annotations

from cloud.errors import CloudError

__all__ = [
    "LicenseCheckFailed",
    "LicenseDenied",
    "LicenseServerUnreachable",
    "LicensingError",
    "LicensingNotConfigured",
]


class LicensingError(CloudError):
    """A license check failed; the message says why and what to do."""


class LicensingNotConfigured(LicensingError):
    """A licensing setting is missing or malformed; the message names the environment variable."""


class LicenseServerUnreachable(LicensingError):
    """The license server could not answer now; the cached lease and then its grace period apply."""


class LicenseCheckFailed(LicensingError):
    """The server refused the request, or its answer is not a lease the cloud may trust."""


class LicenseDenied(LicensingError):
    """The server refused a lease for the portal: ``code`` is ``license_revoked`` or ``license_expired``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
