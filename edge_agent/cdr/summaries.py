"""CDR rows → call summaries, with the interpreter's rules (sans-I/O).

A CDR row is one leg: party A (``channel``) and, when it dialed, party B (``dstchannel``). The rows of a call
share its ``linkedid``. Who is who comes from channel names with the same :class:`ChannelRules` and
:func:`parse_channel` as the AMI interpreter, never from caller ids:

* **direction**: the call's first channel (the leg whose ``uniqueid`` is the call id) is a trunk → inbound;
  an extension whose first dial reaches a trunk → outbound; any other dial → internal. An extension that dialed
  nothing (voicemail, feature codes, an originate nobody answered) is not a call, as for the interpreter.
* **rang**: an extension is party B of a ``Queue`` leg, or of a ``Dial`` leg whose dial string names it
  (``PJSIP/101``, ``Local/101@…``). A leg whose party B is an extension the dial string does not name is a pickup
  or a transfer's result: that extension answered but did not ring.
* **answered**: inbound/internal: the first extension leg ``ANSWERED`` with talk time (a rung phone whose call
  was picked up is recorded ``ANSWERED`` with none); outbound: a trunk leg ``ANSWERED``. ``final_extension``:
  the last extension that answered (inbound/internal), else the caller's extension (outbound/internal).
* **result**: as the interpreter: inbound ``answered``/``missed``; otherwise from the last dial's disposition
  (``BUSY`` → busy, ``CONGESTION``/``FAILED`` → failed, else no_answer).

What a CDR cannot say: transfers (the rows show who talked in turn, not how the call moved; ``transfers`` is
empty, ``final_extension`` still names who had the call last), the click-to-call command id, and the
recording's full path (``recording`` is FreePBX's ``recordingfile`` column as written, usually a bare name, or a
``userfield`` naming a ``.wav``/``.mp3``; the recordings uploader resolves it inside the recordings directory).
With CEL, :func:`with_transfers` adds the transfers: ``BLINDTRANSFER`` (from the transferer's channel to the
``extension`` of its ``extra``) and ``ATTENDEDTRANSFER`` (to the ``transfer_target_channel_name``'s extension;
Asterisk 22 often writes ``N/A`` there, and then the target is the extension that had the call last).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence

from edge_agent.calls.channels import ChannelKind, ChannelRules, ParsedChannel, number_from_dialstring, parse_channel
from wire_protocol.call_events import CallResult, CallSummary, Direction, Transfer, TransferKind

from .rows import CdrRow, CelEvent

__all__ = ["group_calls", "summarize_call", "summarize_rows", "with_transfers"]

log = logging.getLogger(__name__)

_ANONYMOUS = frozenset({"", "<unknown>", "unknown", "anonymous", "restricted", "private", "unavailable"})
_FAILED = frozenset({"CONGESTION", "FAILED"})
_AUDIO = (".wav", ".mp3")


def group_calls(rows: Iterable[CdrRow]) -> dict[str, list[CdrRow]]:
    """Rows by call (Linkedid, else Uniqueid), each call's rows in the order they started."""
    calls: defaultdict[str, list[CdrRow]] = defaultdict(list)
    for row in rows:
        calls[row.call_id].append(row)
    return {call_id: sorted(legs, key=lambda r: r.order) for call_id, legs in calls.items()}


def summarize_rows(rows: Iterable[CdrRow], rules: ChannelRules) -> list[CallSummary]:
    """Every call in ``rows`` that is a call, oldest first. A call whose rows make no valid summary is logged
    and left out; it never stops the others."""
    summaries = []
    for call_id, legs in group_calls(rows).items():
        try:
            summary = summarize_call(legs, rules)
        except Exception as exc:  # odd rows (a bug on them) must not cost the other calls
            log.warning("cdr: call %s skipped, its %d row(s) make no summary: %s", call_id[:80], len(legs), exc)
            continue
        if summary is not None:
            summaries.append(summary)
    return sorted(summaries, key=lambda s: (s.started_at, s.call_id))


def summarize_call(rows: Sequence[CdrRow], rules: ChannelRules) -> CallSummary | None:
    """One call's summary from its rows; ``None`` when the rows are not a call (nothing was dialed)."""
    if not rows:
        return None
    legs = sorted(rows, key=lambda r: r.order)
    call_id = legs[0].call_id

    def parse(name: str) -> ParsedChannel:
        return parse_channel(name, rules.is_extension_number)

    origin = [r for r in legs if r.uniqueid == call_id] or [r for r in legs if r.channel == legs[0].channel]
    first = origin[0]
    caller = parse(first.channel)
    dials = [r for r in legs if r.dstchannel]
    direction = _direction(caller, [parse(r.dstchannel) for r in dials])
    if direction is None:
        return None

    started_at = min(r.start for r in legs)
    ended_at = max(r.end for r in legs)
    external_number: str | None = None
    line: str | None = None
    caller_extension: str | None = None
    rang: list[str] = []
    answers: list[tuple[CdrRow, str | None]] = []  # (leg, extension that answered; None = the outside party)

    if direction == "outbound":
        caller_extension = caller.extension
        trunk_legs = [r for r in dials if parse(r.dstchannel).kind is ChannelKind.TRUNK]
        dialed = trunk_legs[0]
        external_number = number_from_dialstring(dialed.lastdata.split(",")[0]) or dialed.dst or None
        answers = [(r, None) for r in trunk_legs if r.disposition == "ANSWERED"]
    else:
        if direction == "inbound":
            external_number = None if first.src.strip().lower() in _ANONYMOUS else first.src
            line = first.did or (first.dst if first.dst not in ("", "s") else None)
        else:
            caller_extension = caller.extension
        for leg in dials:
            target = parse(leg.dstchannel).extension
            if target is None or target == caller_extension:
                continue
            if _rang(leg, target) and target not in rang:
                rang.append(target)
            if leg.disposition == "ANSWERED":
                answers.append((leg, target))
        talked = [(leg, ext) for leg, ext in answers if leg.billsec > 0]
        answers = talked or answers

    answers.sort(key=lambda a: a[0].answer or a[0].start)
    answered_at = (answers[0][0].answer or answers[0][0].start) if answers else None
    answered_by = answers[0][1] if answers and direction != "outbound" else None
    answering = [ext for _, ext in answers if ext is not None]
    final_extension = answering[-1] if answering else (None if direction == "inbound" else caller_extension)
    talk_seconds = max(0, int((ended_at - answered_at).total_seconds())) if answered_at is not None else 0
    return CallSummary(
        call_id=call_id,
        direction=direction,
        external_number=external_number,
        line=line,
        caller_extension=caller_extension,
        rang=rang,
        answered_by=answered_by,
        transfers=[],
        final_extension=final_extension,
        result=_result(direction, answered_at is not None, dials),
        started_at=started_at,
        answered_at=answered_at,
        ended_at=ended_at,
        talk_seconds=talk_seconds,
        recording=_recording(legs),
        command_id=None,
    )


def _recording(legs: Sequence[CdrRow]) -> str | None:
    """FreePBX's ``recordingfile``; else a ``userfield`` naming an audio file (``Set(CDR(userfield)=
    ${MIXMONITOR_FILENAME})`` after ``MixMonitor``: Asterisk's own CDR schema has no recording column)."""
    named = next((r.recordingfile for r in legs if r.recordingfile), None)
    if named is None:
        named = next((r.userfield for r in legs if r.userfield and r.userfield.lower().endswith(_AUDIO)), None)
    return named


def with_transfers(summary: CallSummary, events: Sequence[CelEvent], rules: ChannelRules) -> CallSummary:
    """The summary with the transfers its call's CEL events record (in time order)."""
    transfers: list[Transfer] = []
    kind: TransferKind
    for event in sorted(events, key=lambda e: e.eventtime):
        source = parse_channel(event.channame, rules.is_extension_number).extension
        if event.eventtype == "BLINDTRANSFER":
            target = event.extra.get("extension")
            to = str(target) if target else None
            kind = "blind"
        elif event.eventtype == "ATTENDEDTRANSFER":
            name = str(event.extra.get("transfer_target_channel_name") or "")
            to = parse_channel(name, rules.is_extension_number).extension if "/" in name else None
            to = to or (summary.final_extension if summary.final_extension != source else None)
            kind = "attended"
        else:
            continue
        if to:
            transfers.append(Transfer(from_extension=source, to=to, kind=kind))
    return summary.model_copy(update={"transfers": transfers}) if transfers else summary


def _direction(caller: ParsedChannel, targets: list[ParsedChannel]) -> Direction | None:
    if caller.kind is ChannelKind.TRUNK:
        return "inbound"
    if not targets:
        return None  # an extension that dialed nothing
    first = targets[0]
    if first.kind is ChannelKind.TRUNK:
        return "outbound"
    if first.kind is ChannelKind.LOCAL and first.extension is None:
        # Local/<number>@… plumbing: where it ended up decides
        return "outbound" if any(t.kind is ChannelKind.TRUNK for t in targets) else "internal"
    return "internal"


def _rang(leg: CdrRow, extension: str) -> bool:
    """Did this leg ring ``extension`` (rather than hand the call to it by pickup or transfer)?"""
    if leg.lastapp.lower() == "queue":
        return True
    if leg.lastapp.lower() != "dial":
        return False
    targets = leg.lastdata.split(",")[0].split("&")
    for target in targets:
        tech, _, rest = target.strip().partition("/")
        endpoint = rest.partition("@")[0] if tech == "Local" else rest.partition("/")[0]
        if endpoint == extension:
            return True
    return False


def _result(direction: Direction, answered: bool, dials: list[CdrRow]) -> CallResult:
    if answered:
        return "answered"
    if direction == "inbound":
        return "missed"
    status = dials[-1].disposition if dials else ""
    if status == "BUSY":
        return "busy"
    if status in _FAILED:
        return "failed"
    return "no_answer"
