"""What the PBX says ended vs what the cloud has, call by call (sans-I/O).

For every call of the agent's report, the cloud is in one of these states, and each has its repair:

==============  ====================================================================  ==========================
finding         the cloud has                                                         repair
==============  ====================================================================  ==========================
``in_crm``      the call ended, and its Bitrix24 side is done (or skipped by policy)  none
``pending``     the call ended, its Bitrix24 side is still being worked on             none (the pipeline has it)
``missing``     nothing of the call                                                   the agent sends it again
``open``        the call, but not its end (a lost hangup, an end never delivered)     the agent sends its end
``unqueued``    the call's end, but no CRM work for it                                the cloud queues it
``failed``      the call, but Bitrix24 refused it for good                            none: shown with the reason
==============  ====================================================================  ==========================

``differs`` is counted on top, not repaired: the cloud's result (from AMI, which sees pickups and transfers as
they happen) and the CDR's disagree. AMI is the authority; the count is for support.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from wire_protocol.messages import ReconcileCall

__all__ = ["FINDINGS", "CloudCall", "Finding", "Findings", "compare"]

Finding = Literal["in_crm", "pending", "missing", "open", "unqueued", "failed"]
FINDINGS: Final[tuple[Finding, ...]] = ("in_crm", "pending", "missing", "open", "unqueued", "failed")
_DONE: Final = frozenset({"done", "skipped"})


@dataclass(frozen=True)
class CloudCall:
    """What the cloud holds of one call: its state (``None``: no such call) and its CRM status (``None``: no CRM
    work was ever requested)."""

    ended: bool
    result: str | None = None
    crm_status: str | None = None
    crm_detail: str | None = None


@dataclass
class Findings:
    by_call: dict[str, Finding] = field(default_factory=dict)
    differs: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)  # why, for the failed ones

    def ids(self, finding: Finding) -> list[str]:
        return [call_id for call_id, found in self.by_call.items() if found == finding]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(FINDINGS, 0)
        for found in self.by_call.values():
            counts[found] += 1
        return counts | {"differs": len(self.differs)}

    @property
    def to_resend(self) -> list[str]:
        """What only the agent can bring: calls the cloud lacks, or lacks the end of."""
        return [call_id for call_id, found in self.by_call.items() if found in ("missing", "open")]


def compare(pbx_calls: Iterable[ReconcileCall], cloud: Mapping[str, CloudCall]) -> Findings:
    findings = Findings()
    for call in pbx_calls:
        held = cloud.get(call.call_id)
        found: Finding
        if held is None:
            found = "missing"
        elif not held.ended:
            found = "open"
        elif held.crm_status is None or held.crm_status == "missing":
            found = "unqueued"
        elif held.crm_status == "failed":
            found = "failed"
            findings.details[call.call_id] = held.crm_detail or ""
        elif held.crm_status in _DONE:
            found = "in_crm"
        else:
            found = "pending"
        findings.by_call[call.call_id] = found
        if held is not None and held.ended and held.result is not None and held.result != call.result:
            findings.differs.append(call.call_id)
    return findings
