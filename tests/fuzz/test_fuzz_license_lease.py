"""Forged and tampered license leases (docs/reliability.md, "Hostile input"): ``verify_lease`` raises only the
package's :class:`LeaseError` family, and whatever it returns is exactly the lease the license server signed."""

from __future__ import annotations

import base64
import json

from fuzz_profile import fuzz
from hypothesis import given
from hypothesis import strategies as st

from license_protocol import Lease, Limits, generate_signing_key, sign_lease, verify_lease
from license_protocol.errors import LeaseError

KEY, OTHER = generate_signing_key(), generate_signing_key()
KEYS = {"k1": KEY.public_key(), "k2": OTHER.public_key()}
GENUINE = Lease.model_validate(
    {
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
)
TOKEN = sign_lease(GENUINE, KEY)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=10,
)


@st.composite
def forged(draw: st.DrawFn) -> tuple[str, Lease | None]:
    """A token, and the lease it may verify as (only one the license server's own key really signed)."""
    token = draw(_forged_token())
    if token.startswith(_SIGNED_MARK):  # signed for real by the key its kid names: it may verify
        token = token.removeprefix(_SIGNED_MARK)
        return token, verify_lease(token, KEYS)
    # anything else can only verify as the genuine lease (base64's spare bits let a few spellings of the same
    # signature through: the same bytes, so the same lease)
    return token, GENUINE


_SIGNED_MARK = "signed:"


@st.composite
def _forged_token(draw: st.DrawFn) -> str:
    body_b64, _, sig_b64 = TOKEN.partition(".")
    kind = draw(st.sampled_from(["flip", "claims", "resign-other", "splice", "text", "deep"]))
    if kind == "flip":  # one character of the token changed
        i = draw(st.integers(0, len(TOKEN) - 1))
        return TOKEN[:i] + draw(st.sampled_from("AaZz09-_.=+/ ")) + TOKEN[i + 1 :]
    if kind == "claims":  # claims edited (a better plan, another portal, later expiry), signature kept
        claims = json.loads(base64.urlsafe_b64decode(body_b64 + "=" * (-len(body_b64) % 4)))
        claims[draw(st.sampled_from([*claims, "extra"]))] = draw(_JSON | st.sampled_from(["enterprise", "portal-b"]))
        return b64(json.dumps(claims).encode()) + "." + sig_b64
    if kind == "resign-other":  # a better plan, signed by the *other* configured key but naming k1
        changed = GENUINE.model_copy(update={"plan": draw(st.sampled_from(["enterprise", "business"]))})
        if draw(st.booleans()):
            return sign_lease(changed, OTHER)  # kid k1, signature by k2: must not verify
        return _SIGNED_MARK + sign_lease(changed, KEY)  # really signed by k1: the control case
    if kind == "splice":  # another body with this signature
        return b64(json.dumps(draw(_JSON)).encode()) + "." + sig_b64
    if kind == "deep":
        return b64(b"[" * draw(st.integers(1, 50_000))) + "." + sig_b64
    return draw(st.text(max_size=200))


@fuzz(400)
@given(forged())
def test_a_forged_or_tampered_lease_never_verifies_as_anything_but_what_was_signed(
    case: tuple[str, Lease | None],
) -> None:
    token, legitimate = case
    try:
        lease = verify_lease(token, KEYS)
    except LeaseError:
        return
    assert lease == legitimate, token  # verified: it must be exactly what the key really signed
