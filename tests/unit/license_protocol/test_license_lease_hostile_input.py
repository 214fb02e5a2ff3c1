"""Regression found by the fuzz tier (tests/fuzz/test_fuzz_license_lease.py): a lease whose body is JSON nested
deeper than Python's stack raised ``RecursionError`` out of ``verify_lease`` (past the cloud's ``except LeaseError``
in the license client and in ``entitlements``); it is a :class:`MalformedLease` now."""

from __future__ import annotations

import base64

import pytest

from license_protocol import MalformedLease, generate_signing_key, verify_lease


def test_a_deeply_nested_lease_body_is_malformed() -> None:
    body = base64.urlsafe_b64encode(b"[" * 100_000).rstrip(b"=").decode()
    with pytest.raises(MalformedLease, match="nested too deeply"):
        verify_lease(f"{body}.AAAA", {"k1": generate_signing_key().public_key()})
