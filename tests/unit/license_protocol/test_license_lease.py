"""The lease contract: what verifies, and every way a token must not."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from license_protocol import (
    BadSignature,
    Lease,
    Limits,
    MalformedKey,
    MalformedLease,
    UnknownKeyId,
    UnsupportedLeaseVersion,
    encode_private_key,
    encode_public_key,
    format_public_keys,
    generate_signing_key,
    parse_public_keys,
    parse_signing_key,
    sign_lease,
    verify_lease,
)
from license_protocol.lease import SIGNING_CONTEXT

KEY = generate_signing_key()
KEYS = {"k1": KEY.public_key()}


def lease(**changes: object) -> Lease:
    values: dict[str, object] = {
        "kid": "k1",
        "member_id": "portal-a",
        "plan": "business",
        "trial": False,
        "features": ("recordings", "calls_to_crm"),
        "limits": Limits(users_with_cards=50, agents=1),
        "iat": 1_790_000_000,
        "exp": 1_790_259_200,
        "license_until": 1_800_000_000,
        "grace": 259_200,
        "nonce": "n" * 22,
    }
    values.update(changes)
    return Lease.model_validate(values)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_signed_lease_verifies_to_the_same_lease() -> None:
    original = lease()
    assert verify_lease(sign_lease(original, KEY), KEYS) == original
    assert original.features == ("calls_to_crm", "recordings")  # sorted, so the signed body is canonical


def test_a_changed_body_does_not_verify() -> None:
    body_b64, sig = sign_lease(lease(), KEY).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body_b64 + "=="))
    claims["features"] = ["calls_to_crm", "click_to_call", "recordings"]
    forged = b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()) + "." + sig
    with pytest.raises(BadSignature):
        verify_lease(forged, KEYS)


@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_flipped_signature_byte_is_refused(position: int, flip: int) -> None:
    body_b64, sig_b64 = sign_lease(lease(), KEY).split(".")
    sig = bytearray(base64.urlsafe_b64decode(sig_b64 + "=="))
    sig[position % len(sig)] ^= flip
    with pytest.raises(BadSignature):
        verify_lease(f"{body_b64}.{b64(bytes(sig))}", KEYS)


def test_another_key_under_a_known_key_id_is_refused() -> None:
    with pytest.raises(BadSignature):
        verify_lease(sign_lease(lease(), generate_signing_key()), KEYS)


def test_an_unknown_key_id_is_refused_naming_the_configured_ones() -> None:
    with pytest.raises(UnknownKeyId, match="k1"):
        verify_lease(sign_lease(lease(kid="k9"), KEY), KEYS)


def test_rotation_accepts_leases_of_every_configured_key() -> None:
    new = generate_signing_key()
    keys = {"k1": KEY.public_key(), "k2": new.public_key()}
    assert verify_lease(sign_lease(lease(), KEY), keys).kid == "k1"
    assert verify_lease(sign_lease(lease(kid="k2"), new), keys).kid == "k2"


def test_a_signature_over_the_body_without_the_lease_context_is_refused() -> None:
    body = json.dumps(lease().model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()
    assert KEY.sign(SIGNING_CONTEXT + body) != KEY.sign(body)
    with pytest.raises(BadSignature):
        verify_lease(f"{b64(body)}.{b64(KEY.sign(body))}", KEYS)


def test_an_unknown_version_is_refused_before_anything_else() -> None:
    body = json.dumps({"v": 2, "kid": "k1"}).encode()
    with pytest.raises(UnsupportedLeaseVersion, match="version 2"):
        verify_lease(f"{b64(body)}.{b64(KEY.sign(SIGNING_CONTEXT + body))}", KEYS)


def test_signed_content_that_is_not_a_lease_is_refused() -> None:
    body = json.dumps({"v": 1, "kid": "k1", "plan": "x"}).encode()
    with pytest.raises(MalformedLease, match="lease model"):
        verify_lease(f"{b64(body)}.{b64(KEY.sign(SIGNING_CONTEXT + body))}", KEYS)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "!!!.###", b64(b"[1]") + "." + b64(b"x"), b64(b"\xff") + ".AA"])
def test_garbage_is_a_malformed_lease(token: str) -> None:
    with pytest.raises(MalformedLease):
        verify_lease(token, KEYS)


def test_a_lease_must_end_after_it_starts() -> None:
    with pytest.raises(ValueError, match="exp"):
        lease(exp=1_790_000_000)


def test_keys_round_trip_through_their_environment_form() -> None:
    kid, key = parse_signing_key(f"2026-11:{encode_private_key(KEY)}")
    assert kid == "2026-11" and encode_public_key(key.public_key()) == encode_public_key(KEY.public_key())
    spec = format_public_keys({"a": KEY.public_key(), "b": generate_signing_key().public_key()})
    assert list(parse_public_keys(spec)) == ["a", "b"]
    assert parse_public_keys("") == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nokid", "kid:base64"),
        ("k1:not base64!", "not base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "5 bytes"),
        ("k 1:" + encode_public_key(KEY.public_key()), "key id"),
        (f"k1:{encode_public_key(KEY.public_key())},k1:{encode_public_key(KEY.public_key())}", "twice"),
    ],
)
def test_malformed_public_key_lists_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(MalformedKey, match=message):
        parse_public_keys(spec)


@given(st.text(max_size=300))
def test_any_text_is_refused_with_a_lease_error_and_nothing_else(token: str) -> None:
    from license_protocol import LeaseError

    with pytest.raises(LeaseError):
        verify_lease(token, KEYS)
