"""Call events as a person would read them in a terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sandbox.bitrix24.portal import Call, Portal
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

__all__ = ["crm_lines", "describe", "outcome_table", "summary_table"]

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


_TYPES = {1: "outgoing", 2: "incoming", 3: "incoming, transferred", 4: "callback"}
_STATUS = {
    "200": "answered",
    "304": "missed",
    "486": "busy",
    "603-S": "cancelled",
    "503": "failed",
    "480": "unavailable",
}


def _who(user: int | None, names: Mapping[int, str]) -> str:
    return names.get(user, f"user {user}") if user is not None else "-"


def crm_lines(calls: Sequence[Call], portal: Portal, names: Mapping[int, str]) -> list[str]:
    """What Bitrix24 shows for one PBX call (each registration: a leg), as a person would say it."""
    if not calls:
        return ["nothing registered (yet)"]
    lines = []
    for call in calls:
        shown = sorted({uid for _, what, uid in call.card_log if what == "show"})
        hidden = sorted({uid for _, what, uid in call.card_log if what == "hide"})
        kind = _TYPES.get(call.type, str(call.type))
        lines.append(f"{call.call_id[:28]}… registered as {kind} for {_who(call.user_id, names)}")
        if shown:
            lines.append(f"  call card shown to {', '.join(_who(u, names) for u in shown)}")
        if hidden:
            lines.append(f"  card closed early for {', '.join(_who(u, names) for u in hidden)}")
        if call.finished:
            status = _STATUS.get(call.status_code, call.status_code)
            reason = f" ({call.failed_reason})" if call.failed_reason else ""
            owner = _who(call.finish_user_id, names)
            lines.append(f"  finished: {status} ({call.status_code}), {call.duration} s, owner {owner}{reason}")
        if call.created_lead is not None:
            phones = ", ".join(portal.leads[call.created_lead].phones) if call.created_lead in portal.leads else ""
            lines.append(f"  new lead #{call.created_lead} created for the unknown number {phones}")
        elif call.crm_entity_type:
            lines.append(f"  linked to {call.crm_entity_type.lower()} #{call.crm_entity_id}")
    return lines


def outcome_table(rows: Sequence[tuple[str, Sequence[Call], bool]], names: Mapping[int, str]) -> str:
    """One row per call: what Bitrix24 has, and whether it is what the demo expected."""
    header = ("call", "registrations", "owner", "status", "talk", "cards", "lead", "as expected")
    table = [header]
    for title, calls, ok in rows:
        last = calls[-1] if calls else None
        shown = sorted({uid for call in calls for _, what, uid in call.card_log if what == "show"})
        table.append(
            (
                title[:52],
                str(len(calls)),
                _who(last.finish_user_id, names) if last else "-",
                last.status_code if last and last.finished else "-",
                f"{last.duration}s" if last else "-",
                ",".join(names.get(u, str(u)).split()[0] for u in shown) or "-",
                "new" if any(c.created_lead for c in calls) else "-",
                "yes" if ok else "NO",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table)
