"""PHP bracket forms, both ways (DOC settings/how-to-call-rest-api/data-encoding.md, api-reference/events/index.md)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from sandbox.bitrix24.forms import build_php_query, parse_php_query


def test_brackets_nest_and_numeric_keys_become_lists() -> None:
    # DOC crm/leads/crm-lead-add.md: fields[PHONE][0][VALUE]
    parsed = parse_php_query(
        "fields%5BTITLE%5D=Call&fields[PHONE][0][VALUE]=%2B79261234567&fields[PHONE][0][VALUE_TYPE]=WORK&auth=t"
    )
    assert parsed == {
        "fields": {"TITLE": "Call", "PHONE": [{"VALUE": "+79261234567", "VALUE_TYPE": "WORK"}]},
        "auth": "t",
    }


def test_empty_brackets_append() -> None:
    assert parse_php_query("USER_ID[]=1&USER_ID[]=2") == {"USER_ID": ["1", "2"]}


def test_event_bodies_percent_encode_brackets_and_round_trip() -> None:
    # protocols.md §A6.3: flat bracket keys, percent-encoded like PHP's http_build_query
    payload = {"event": "ONEXTERNALCALLSTART", "data": {"CALL_ID": "externalCall.x.1", "USER_ID": "3"}, "auth": {}}
    body = build_php_query(payload)
    assert "data%5BCALL_ID%5D=externalCall.x.1" in body
    assert dict(parse_qsl(body))["data[USER_ID]"] == "3"
    assert parse_php_query(body)["data"] == payload["data"]
