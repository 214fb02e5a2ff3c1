"""Click-to-call on the PBX: the AMI Originate that rings the user's phone first, then dials the client.

The action carries the cloud's command id twice: as ``ActionID`` (echoed by OriginateResponse) and as the
inherited channel variable ``__PBXLINK_COMMAND_ID`` (seen by the interpreter on every channel of the call), so
the resulting call is tied back to the command that asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from edge_agent.calls.interpreter import COMMAND_ID_VARIABLE, COMMAND_NUMBER_VARIABLE, ORIGINATE_ACTION_PREFIX

__all__ = ["OriginateRequest", "OriginateResult", "originate_action", "originate_result"]

#: OriginateResponse ``Reason`` codes (Asterisk's AST_CONTROL_* values) -> what happened to the user's phone.
REASONS: Final = {
    "0": "failed",  # no such extension / channel could not be created
    "1": "hung_up",
    "3": "no_answer",  # the user's phone rang out
    "4": "answered",
    "5": "busy",
    "8": "congestion",
}


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    command_id: str
    extension: str  # the user's extension: its phone rings first
    number: str  # what to dial once the user answers (after the dialing rules: prefix etc.)
    context: str = "pbxlink-originate"
    channel_template: str = "PJSIP/{extension}"  # or "Local/{extension}@from-internal" (follow-me, FreePBX)
    ring_seconds: int = 30
    caller_id: str | None = None  # what the user's phone shows; default: the number about to be called


@dataclass(frozen=True, slots=True)
class OriginateResult:
    command_id: str
    success: bool
    reason: str  # a value of REASONS, or "unknown", or "rejected" when Asterisk refused the action itself
    message: str
    channel: str | None = None
    uniqueid: str | None = None


def originate_action(request: OriginateRequest) -> dict[str, str | list[str]]:
    """Raises ``ValueError`` if a value could break out of its AMI line (the wire protocol already refuses
    such values; this keeps the PBX safe whatever the caller)."""
    for value in (request.command_id, request.extension, request.number, request.context, request.caller_id or ""):
        if any(ord(char) < 32 or char == "\x7f" for char in value):
            raise ValueError(f"refusing an Originate value with control characters: {value!r}")
    number = request.number
    return {
        "Action": "Originate",
        "ActionID": ORIGINATE_ACTION_PREFIX + request.command_id,
        "Channel": request.channel_template.format(extension=request.extension),
        "Context": request.context,
        "Exten": number,
        "Priority": "1",
        "Timeout": str(request.ring_seconds * 1000),
        "CallerID": request.caller_id or f'"{number}" <{number}>',
        # a list: panoramisk writes one "Variable:" line per item (a "\n" inside one value would break the frame)
        "Variable": [f"__{COMMAND_ID_VARIABLE}={request.command_id}", f"__{COMMAND_NUMBER_VARIABLE}={number}"],
        "Async": "true",  # a string, always: panoramisk 1.4 breaks on a missing or boolean Async
    }


def originate_result(command_id: str, answer: Any) -> OriginateResult:
    """Read panoramisk's answer to an async Originate: ``[Response, OriginateResponse]`` or one Response."""
    messages = answer if isinstance(answer, list) else [answer]
    first = messages[0]
    if first.get("Response") != "Success":
        return OriginateResult(command_id, False, "rejected", str(first.get("Message") or "Originate refused"))
    final = next((m for m in messages if m.get("Event") == "OriginateResponse"), None)
    if final is None:
        return OriginateResult(command_id, True, "unknown", str(first.get("Message") or "queued"))
    reason = REASONS.get(str(final.get("Reason")), "unknown")
    return OriginateResult(
        command_id,
        final.get("Response") == "Success",
        reason,
        f"OriginateResponse {final.get('Response')} (reason {final.get('Reason')}: {reason})",
        channel=final.get("Channel") or None,
        uniqueid=final.get("Uniqueid") or None,
    )
