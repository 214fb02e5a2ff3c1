"""The contract between the license server and the cloud: the check request, the signed lease, the keys.

A package of its own so that ``license_server`` and ``cloud`` share it without importing each other. It
depends on pydantic, ``cryptography`` and the standard library only. See ``docs/licensing.md``.
"""

from license_protocol.errors import (
    BadSignature,
    LeaseError,
    LicenseProtocolError,
    MalformedKey,
    MalformedLease,
    UnknownKeyId,
    UnsupportedLeaseVersion,
)
from license_protocol.keys import (
    decode_private_key,
    decode_public_key,
    encode_private_key,
    encode_public_key,
    format_public_keys,
    generate_signing_key,
    parse_public_keys,
    parse_signing_key,
)
from license_protocol.lease import (
    ALL_FEATURES,
    LEASE_VERSION,
    Feature,
    Lease,
    Limits,
    sign_lease,
    verify_lease,
)
from license_protocol.messages import (
    MEMBER_ID_PATTERN,
    CheckRequest,
    CheckResponse,
    ErrorBody,
    ErrorCode,
    ErrorResponse,
    Usage,
)

__all__ = [
    "ALL_FEATURES",
    "LEASE_VERSION",
    "MEMBER_ID_PATTERN",
    "BadSignature",
    "CheckRequest",
    "CheckResponse",
    "ErrorBody",
    "ErrorCode",
    "ErrorResponse",
    "Feature",
    "Lease",
    "LeaseError",
    "LicenseProtocolError",
    "Limits",
    "MalformedKey",
    "MalformedLease",
    "UnknownKeyId",
    "UnsupportedLeaseVersion",
    "Usage",
    "decode_private_key",
    "decode_public_key",
    "encode_private_key",
    "encode_public_key",
    "format_public_keys",
    "generate_signing_key",
    "parse_public_keys",
    "parse_signing_key",
    "sign_lease",
    "verify_lease",
]
