"""Errors of the shared licensing contract.

::

    LicenseProtocolError        anything this package raises
    ├── MalformedKey            a key or key list (environment variable) does not parse
    └── LeaseError              a lease token must not be trusted
        ├── MalformedLease      not a lease token, or its content does not fit the lease model
        ├── UnsupportedLeaseVersion  a lease format this code does not know (upgrade the cloud)
        ├── UnknownKeyId        signed with a key id the verifier is not configured with
        └── BadSignature        the signature does not match the content (tampered, or the wrong key)
"""

from __future__ import annotations

__all__ = [
    "BadSignature",
    "LeaseError",
    "LicenseProtocolError",
    "MalformedKey",
    "MalformedLease",
    "UnknownKeyId",
    "UnsupportedLeaseVersion",
]


class LicenseProtocolError(Exception):
    """Base of every error of the licensing contract."""


class MalformedKey(LicenseProtocolError):
    """A key, or a ``kid:base64`` list of keys, does not parse; the message says which part."""


class LeaseError(LicenseProtocolError):
    """The lease token must not be trusted."""


class MalformedLease(LeaseError):
    """Not a lease token at all, or signed content that does not fit the lease model."""


class UnsupportedLeaseVersion(LeaseError):
    """The lease is of a format version this code does not know."""


class UnknownKeyId(LeaseError):
    """The lease names a key id the verifier has no public key for (not rotated in yet, or retired)."""


class BadSignature(LeaseError):
    """The signature does not verify: the content was changed, or another key signed it."""
