"""What the portal shows for each call of a chaos run against what it must show; the printed table. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.bitrix24.portal import Call
from sandbox.chaos.calls import ChaosCall

__all__ = ["Verdict", "judge", "render"]


@dataclass
class Verdict:
    """Counts (``calls`` each) and the first problems, per check; ``passed`` when every check holds."""

    planned: int = 0
    live: int = 0  # seen by the agent over AMI
    from_cdr: int = 0  # made while the agent was dead or AMI was down
    in_crm: int = 0
    right_status: int = 0
    right_owner: int = 0
    right_legs: int = 0
    registered_twice: int = 0
    open_cards: int = 0
    unfinished: int = 0
    recordings_expected: int = 0  # live calls with a MixMonitor file
    recordings_attached: int = 0
    cdr_recordings_expected: int = 0  # calls recovered from the CDR whose row names a recording (FreePBX)
    recordings_from_cdr: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        every = self.planned
        return (
            self.in_crm == every
            and self.right_status == every
            and self.right_owner == every
            and self.right_legs == every
            and self.registered_twice == 0
            and self.open_cards == 0
            and self.unfinished == 0
            and self.recordings_attached == self.recordings_expected
            and self.recordings_from_cdr == self.cdr_recordings_expected
        )


def judge(calls: Sequence[ChaosCall], legs_of: Mapping[str, list[Call]], audit: Mapping[str, Any]) -> Verdict:
    """``legs_of``: call id → the portal's registrations of it, leg by leg; ``audit``: ``Portal.audit()``."""
    verdict = Verdict(planned=len(calls))
    ours = {leg.call_id for legs in legs_of.values() for leg in legs}
    for call in calls:
        expected = call.expected
        legs = legs_of.get(call.call_id, [])
        if call.path == "ami":
            verdict.live += 1
        else:
            verdict.from_cdr += 1
        name = f"{call.call_id} ({call.scenario}, {call.path})"
        if not legs:
            verdict.problems.append(f"{name}: not in the CRM")
            continue
        verdict.in_crm += 1
        last = legs[-1]
        if last.status_code == expected.status:
            verdict.right_status += 1
        else:
            verdict.problems.append(f"{name}: status {last.status_code!r}, expected {expected.status!r}")
        if last.finish_user_id == expected.owner:
            verdict.right_owner += 1
        else:
            verdict.problems.append(f"{name}: owner {last.finish_user_id}, expected {expected.owner}")
        if len(legs) == call.legs:
            verdict.right_legs += 1
        else:
            verdict.problems.append(f"{name}: {len(legs)} leg(s) registered, expected {call.legs}")
        if call.recording:
            attached = last.record is not None
            if call.path == "ami":
                verdict.recordings_expected += 1
                verdict.recordings_attached += attached
                if not attached:
                    verdict.problems.append(f"{name}: recording {call.recording} not attached")
            else:
                verdict.cdr_recordings_expected += 1
                verdict.recordings_from_cdr += attached
                if not attached:
                    verdict.problems.append(f"{name}: recording {call.recording} (from the CDR) not attached")
    twice = {k: v for k, v in audit["duplicate_external_ids"].items() if set(v) & ours}
    twice |= {k: [k] for k in audit["reregistered"] if k in ours}
    verdict.registered_twice = len(twice)
    verdict.problems += [f"registered more than once: {k} → {v}" for k, v in twice.items()]
    open_cards = sorted({c for calls in audit["open_cards"].values() for c in calls if c in ours})
    verdict.open_cards = len(open_cards)
    verdict.problems += [f"card left open on {c}" for c in open_cards]
    unfinished = [c for c in audit["unfinished"] if c in ours]
    verdict.unfinished = len(unfinished)
    verdict.problems += [f"never finished: {c}" for c in unfinished]
    return verdict


def render(verdict: Verdict, facts: Mapping[str, object]) -> str:
    """The result table (Markdown, so it can be pasted into docs/reliability.md) and the run's facts."""
    every = verdict.planned
    rows = [
        ("calls made", every, every),
        ("  seen live over AMI", verdict.live, verdict.live),
        ("  made while the agent was dead or AMI down (CDR)", verdict.from_cdr, verdict.from_cdr),
        ("in the CRM", verdict.in_crm, every),
        ("right status", verdict.right_status, every),
        ("right owner", verdict.right_owner, every),
        ("right legs (one per transfer)", verdict.right_legs, every),
        ("registered twice", verdict.registered_twice, 0),
        ("cards left open", verdict.open_cards, 0),
        ("registered, never finished", verdict.unfinished, 0),
        ("recordings attached (live calls)", verdict.recordings_attached, verdict.recordings_expected),
        (
            "recordings attached (calls recovered from the CDR)",
            verdict.recordings_from_cdr,
            verdict.cdr_recordings_expected,
        ),
    ]
    lines = ["| check | count | must be |", "|---|---:|---:|"]
    lines += [f"| {name} | {count} | {want} |" for name, count, want in rows]
    lines.append("")
    lines += [f"| {key} | {value} |" if i else f"| run | |\n|---|---|\n| {key} | {value} |"
              for i, (key, value) in enumerate(facts.items())]  # fmt: skip
    lines.append("")
    lines.append("PASS" if verdict.passed else f"FAIL ({len(verdict.problems)} problem(s)):")
    lines += [f"  - {problem}" for problem in verdict.problems[:40]]
    if len(verdict.problems) > 40:
        lines.append(f"  - … and {len(verdict.problems) - 40} more")
    return "\n".join(lines)
