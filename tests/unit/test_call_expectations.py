from sandbox.call_expectations import AnyOrder, mismatches


def test_reports_missing_calls_wrong_fields_and_talk_ranges() -> None:
    reported = [{"call_id": "a", "result": "answered", "talk_seconds": 7, "rang": ["101"]}]
    assert mismatches([{"call_id": "a", "result": "answered", "talk_seconds": [5, 8]}], reported) == []
    assert mismatches([{"call_id": "a", "talk_seconds": [1, 3]}], reported) == [
        "call a: talk_seconds is 7, expected [1, 3]"
    ]
    assert mismatches([{"call_id": "a", "rang": ["102"]}], reported) == ["call a: rang is ['101'], expected ['102']"]
    assert mismatches([{"call_id": "b"}], reported) == ["call b: not reported (reported: ['a'])"]


def test_rang_in_any_order_ignores_order_but_not_members() -> None:
    reported = [{"call_id": "a", "rang": ["101", "102"]}]
    assert mismatches([{"call_id": "a", "rang": AnyOrder(["102", "101"])}], reported) == []
    assert mismatches([{"call_id": "a", "rang": ["102", "101"]}], reported) != []
    assert mismatches([{"call_id": "a", "rang": AnyOrder(["102"])}], reported) != []
    assert mismatches([{"call_id": "a", "rang": AnyOrder(["101", "102", "103"])}], reported) != []
