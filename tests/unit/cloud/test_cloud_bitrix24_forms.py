"""PHP bracket forms: batch command encoding and the parser for install/event posts (protocols.md §A5, §A6.3)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.bitrix24.forms import FormError, encode_command, flatten, parse_body, parse_form


def test_nested_dicts_and_lists_become_php_brackets() -> None:
    assert flatten({"FILTER": {"UF_PHONE_INNER": "101", "ACTIVE": True}, "USER_ID": [1, 2], "X": None}) == [
        ("FILTER[UF_PHONE_INNER]", "101"),
        ("FILTER[ACTIVE]", "1"),
        ("USER_ID[0]", "1"),
        ("USER_ID[1]", "2"),
        ("X", ""),
    ]


def test_command_values_are_encoded_once_and_references_pass_through() -> None:
    command = encode_command(
        "telephony.externalCall.show", {"CALL_ID": "$result[reg][CALL_ID]", "USER_ID": [7, 8], "T": "a&b=c d+"}
    )
    method, _, query = command.partition("?")
    assert method == "telephony.externalCall.show"
    assert "CALL_ID=$result[reg][CALL_ID]" in query
    assert parse_qsl(query) == [
        ("CALL_ID", "$result[reg][CALL_ID]"),
        ("USER_ID[0]", "7"),
        ("USER_ID[1]", "8"),
        ("T", "a&b=c d+"),
    ]
    assert encode_command("user.current") == "user.current"
    with pytest.raises(ValueError):
        encode_command("user.get?x=1")


def test_parse_form_nests_brackets_encoded_or_not() -> None:
    body = (
        "event=ONEXTERNALCALLSTART&data%5BCALL_ID%5D=externalCall.1&data[USER_ID]=2&auth%5Bmember_id%5D=m1"
        "&ids[]=a&ids[]=b&PHONE%5B0%5D%5BVALUE%5D=%2B7926"
    )
    assert parse_form(body) == {
        "event": "ONEXTERNALCALLSTART",
        "data": {"CALL_ID": "externalCall.1", "USER_ID": "2"},
        "auth": {"member_id": "m1"},
        "ids": ["a", "b"],
        "PHONE": [{"VALUE": "+7926"}],
    }
    assert parse_form("") == {}
    assert parse_form("0=a") == {"0": "a"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("no-equals-sign", "not a form body"),
        ("a=1&a[b]=2", "both a value and an array"),
        ("a[b]=1&a=2", "both a value and an array"),
        ("[x]=1", "malformed form key"),
        ("a" + "[x]" * 9 + "=1", "deeper"),
        ("&".join(f"k{i}=v" for i in range(1001)), "not a form body"),
    ],
)
def test_malformed_forms_are_refused_with_a_reason(body: str, message: str) -> None:
    with pytest.raises(FormError, match=message):
        parse_form(body)


@given(st.text(alphabet=st.sampled_from("ab[]=&%5BD;+0 \u00e9"), max_size=60))
def test_any_text_parses_or_is_refused_with_form_error(body: str) -> None:
    try:
        parsed = parse_form(body)
    except FormError:
        return
    assert isinstance(parsed, dict)


@given(st.binary(max_size=40), st.sampled_from(["application/json", "application/x-www-form-urlencoded", ""]))
def test_any_bytes_parse_or_are_refused_with_form_error(body: bytes, content_type: str) -> None:
    try:
        parsed = parse_body(body, content_type)
    except FormError:
        return
    assert isinstance(parsed, dict)


def test_absurdly_nested_json_is_refused() -> None:
    with pytest.raises(FormError):
        parse_body(b"[" * 100_000, "application/json")
