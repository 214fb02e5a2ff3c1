"""Comparing the calls the agent reported with the calls a scenario knows it made.

An expectation is a dict of summary fields (only those the scenario is sure of), matched to a reported call by
``call_id``. ``talk_seconds`` may be a ``[low, high]`` range, since a call's talk time depends on SIP timing;
``rang`` may be an :class:`AnyOrder` list, since phones a queue or ring group rings at once start ringing within
the same millisecond and no order between them is the true one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["AnyOrder", "mismatches"]


class AnyOrder(list[str]):
    """Expected items whose order is not part of the expectation (it still serializes as a JSON list)."""


def _matches(field: str, want: Any, got: Any) -> bool:
    if field == "talk_seconds" and isinstance(want, list | tuple):
        low, high = want
        return isinstance(got, int) and low <= got <= high
    if isinstance(want, AnyOrder):
        return isinstance(got, list) and sorted(want) == sorted(got)
    return bool(want == got)


def mismatches(expected: Sequence[Mapping[str, Any]], reported: Sequence[Mapping[str, Any]]) -> list[str]:
    """Human-readable differences; empty when every expected call was reported as expected."""
    by_id = {call["call_id"]: call for call in reported}
    problems = []
    for want in expected:
        call_id = want["call_id"]
        got = by_id.get(call_id)
        if got is None:
            problems.append(f"call {call_id}: not reported (reported: {sorted(by_id)})")
            continue
        for field, value in want.items():
            if not _matches(field, value, got.get(field)):
                problems.append(f"call {call_id}: {field} is {got.get(field)!r}, expected {value!r}")
    return problems
