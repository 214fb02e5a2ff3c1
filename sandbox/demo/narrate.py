"""Call events as a person would read them in a terminal."""

from __future__ import annotations

from wire_protocol.call_events import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallRecording,
    CallRinging,
    CallRingStopped,
    CallStarted,
    CallSummary,
    CallTransferred,
)

__all__ = ["describe", "summary_table"]

_STOP_REASONS = {
    "answered_elsewhere": "someone else answered",
    "cancelled": "caller gave up",
    "no_answer": "no answer",
    "busy": "busy",
    "unavailable": "unavailable",
    "answered": "answered",
}


def describe(event: CallEvent) -> str:
    """One line, starting with the time, saying what happened."""
    clock = event.at.strftime("%H:%M:%S")
    match event:
        case CallStarted(direction="inbound"):
            caller = event.external_number or "an anonymous caller"
            return f"{clock}  inbound call from {caller} to line {event.line or '?'}"
        case CallStarted(direction="outbound"):
            via = f" (click-to-call {event.command_id})" if event.command_id else ""
            return f"{clock}  extension {event.caller_extension} calls {event.external_number}{via}"
        case CallStarted():
            return f"{clock}  internal call from extension {event.caller_extension}"
        case CallRinging():
            return f"{clock}    rings extension {event.extension}: show the call card"
        case CallRingStopped():
            return f"{clock}    stops ringing at {event.extension} ({_STOP_REASONS[event.reason]}): hide the card"
        case CallAnswered(extension=None):
            return f"{clock}    the other party answered"
        case CallAnswered():
            return f"{clock}    extension {event.extension} answered"
        case CallTransferred():
            transfer = event.transfer
            return f"{clock}    {transfer.kind} transfer from {transfer.from_extension} to {transfer.to}"
        case CallRecording():
            return f"{clock}    recording to {event.file}"
        case CallEnded():
            summary = event.summary
            lost = " (found ended after an AMI gap)" if event.reason == "lost" else ""
            return f"{clock}  ended: {summary.result}, {summary.talk_seconds} s of talk{lost}"


def summary_table(summaries: list[tuple[str, CallSummary]]) -> str:
    """A fixed-width table of finished calls, one row each."""
    header = ("scenario", "direction", "from/to", "line", "rang", "answered", "transfers", "final", "result", "talk")
    rows = [header]
    for name, s in summaries:
        party = s.external_number or ("-" if s.direction == "internal" else "anonymous")
        rows.append(
            (
                name,
                s.direction,
                party if s.direction != "internal" else f"{s.caller_extension}",
                s.line or "-",
                ",".join(s.rang) or "-",
                s.answered_by or "-",
                ",".join(f"{t.from_extension}>{t.to}" for t in s.transfers) or "-",
                s.final_extension or "-",
                s.result,
                f"{s.talk_seconds}s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
