"""Ed25519 keys as text, for environment variables: raw 32-byte keys in standard base64, named by a key id.

* signing key (license server only): ``LICENSE_SIGNING_KEY="kid:base64(raw private key)"``
* verifying keys (the cloud): ``LICENSE_PUBLIC_KEYS="kid1:base64,kid2:base64"``; several during a rotation.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from license_protocol.errors import MalformedKey

__all__ = [
    "KID_PATTERN",
    "decode_private_key",
    "decode_public_key",
    "encode_private_key",
    "encode_public_key",
    "format_public_keys",
    "generate_signing_key",
    "parse_public_keys",
    "parse_signing_key",
]

#: Key ids: short, printable, no ``:`` or ``,`` (the list separators).
KID_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"
_KID_RE = re.compile(KID_PATTERN)


def generate_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _raw(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedKey(f"{what}: not base64") from None
    if len(raw) != 32:
        raise MalformedKey(f"{what}: {len(raw)} bytes, an Ed25519 key has 32")
    return raw


def encode_private_key(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(raw).decode()


def decode_private_key(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_raw(text, "private key"))


def encode_public_key(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def decode_public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_raw(text, "public key"))


def _split(item: str, what: str) -> tuple[str, str]:
    kid, sep, value = item.strip().partition(":")
    if not sep or not _KID_RE.match(kid):
        raise MalformedKey(f"{what}: expected 'kid:base64' with a key id of letters, digits, '_', '-', '.'")
    return kid, value


def parse_signing_key(spec: str) -> tuple[str, Ed25519PrivateKey]:
    """``"kid:base64"`` → (kid, key)."""
    kid, value = _split(spec, "signing key")
    return kid, decode_private_key(value)


def parse_public_keys(spec: str) -> dict[str, Ed25519PublicKey]:
    """``"kid1:base64,kid2:base64"`` → {kid: key}; an empty string gives no keys."""
    keys: dict[str, Ed25519PublicKey] = {}
    for number, item in enumerate(filter(None, (part.strip() for part in spec.split(","))), start=1):
        kid, value = _split(item, f"public key #{number}")
        if kid in keys:
            raise MalformedKey(f"public key #{number}: key id {kid!r} given twice")
        try:
            keys[kid] = decode_public_key(value)
        except MalformedKey as exc:
            raise MalformedKey(f"public key {kid!r}: {exc}") from None
    return keys


def format_public_keys(keys: dict[str, Ed25519PublicKey]) -> str:
    """The inverse of :func:`parse_public_keys`."""
    return ",".join(f"{kid}:{encode_public_key(key)}" for kid, key in keys.items())
