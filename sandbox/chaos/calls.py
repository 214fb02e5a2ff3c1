"""The calls of a chaos run and what the CRM must show for each: recorded lab calls with fresh ids and a client
number of their own (so no call's owner depends on another's), the CDR rows the PBX writes for them, and their
MixMonitor files.

Ground truth per scenario comes from the lab's expectations (``tests/fixtures/traces/*.expected.json``) and the
CRM rules (docs/crm-logic.md): status by result, owner = whoever had the call last, a missed call's owner = the
last user whose phone rang (a new number matches no client). A call the agent never saw over AMI reaches the
cloud from the CDR, which shows no transfer without CEL: one leg instead of two, same status and owner.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Literal

from edge_agent.ami.framing import AmiMessage
from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.trace import read_trace
from sandbox.portal_stack import ANNA, BORIS
from wire_protocol.call_events import CallEnded

__all__ = ["SCENARIOS", "ChaosCall", "Expected", "Source", "make_call"]

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "tests" / "fixtures" / "traces"
CDR_ROWS = ROOT / "tests" / "fixtures" / "cdr" / "lab_master_db_rows.json"
RECORDED_CUSTOMER = "79261234567"  # the caller of every recorded inbound call
RECORDED_DIALED = "79031112233"  # the number every recorded outbound call dials
_CHANNEL_SUFFIX = re.compile(r"-([0-9a-f]{8})(?=[;,]|$)")
_ID = re.compile(r"pbx-(\d+)\.(\d+)")
#: The dates in a MixMonitor path as the lab's dialplan writes it (FreePBX's layout, in UTC like the CDR here):
#: ``/YYYY/MM/DD/`` folders and a ``-YYYYMMDD-HHMMSS-`` stamp in the name.
_DAY_FOLDER = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/")
_NAME_STAMP = re.compile(r"-(\d{8}-\d{6})-")

Source = Literal["ami", "cdr"]  # how the agent learns of the call: live over AMI, or from the CDR afterwards


@dataclass(frozen=True)
class Expected:
    """What the portal must show once the call is over: its legs, the last leg's status and owner."""

    legs_ami: int
    legs_cdr: int
    status: str
    owner: int
    recorded: bool = True


#: The scenarios played, with their ground truth (users: Anna = 101, Boris = 102).
SCENARIOS: dict[str, Expected] = {
    "inbound_queue_answered": Expected(1, 1, "200", BORIS),
    "inbound_direct_answered": Expected(1, 1, "200", ANNA),
    "inbound_direct_missed": Expected(1, 1, "304", ANNA),
    "inbound_caller_hangs_up_ringing": Expected(1, 1, "304", ANNA),
    "inbound_pickup": Expected(1, 1, "200", BORIS),
    "inbound_ring_group": Expected(1, 1, "200", ANNA),
    "inbound_anonymous_answered": Expected(1, 1, "200", ANNA),
    "blind_transfer": Expected(2, 1, "200", BORIS),
    "attended_transfer": Expected(2, 1, "200", BORIS),
    "outbound_answered": Expected(1, 1, "200", ANNA),
    "outbound_busy": Expected(1, 1, "486", ANNA),
    "outbound_no_answer": Expected(1, 1, "603-S", ANNA),
}


@dataclass
class ChaosCall:
    number: int
    scenario: str
    path: Source
    messages: list[AmiMessage]
    cdr_rows: list[dict[str, str]]
    call_id: str
    recording: str | None  # the MixMonitor file as the PBX names it

    @property
    def expected(self) -> Expected:
        return SCENARIOS[self.scenario]

    @property
    def legs(self) -> int:
        return self.expected.legs_ami if self.path == "ami" else self.expected.legs_cdr


def _rewriter(number: int, run: int) -> dict[str, str]:
    return {
        RECORDED_CUSTOMER: f"7916{run % 100:02d}{number:05d}",
        RECORDED_DIALED: f"7903{run % 100:02d}{number:05d}",
    }


def make_call(scenario: str, number: int, path: Source, started_at: float, *, run: int = 0) -> ChaosCall:
    """Lab call ``scenario`` as call ``number`` of run ``run``: fresh Linkedid/Uniqueids (``c<run>n<number>-``),
    unique channel names and client numbers; its CDR rows moved to ``started_at`` (epoch, written in UTC)."""
    messages = read_trace(TRACES / f"{scenario}.jsonl")
    numbers = _rewriter(number, run)
    prefix = f"c{run}n{number}-"

    recorded_start = float(messages[0]["_ts"])
    shift = timedelta(seconds=started_at - recorded_start)

    def rewrite(value: str) -> str:
        value = value.replace("pbx-", prefix)
        if "/monitor/" in value:  # the recording is filed under the day the call happens, as the PBX does
            value = _moved_recording_path(value, shift, datetime.fromtimestamp(started_at, UTC))
        value = _CHANNEL_SUFFIX.sub(lambda m: f"-{number % 0xFFFF:04x}{m.group(1)[4:]}", value)
        for old, new in numbers.items():
            value = value.replace(old, new)
        return value

    fresh = [{key: rewrite(value) for key, value in message.items()} for message in messages]
    call_id = next(m["Linkedid"] for m in fresh if m.get("Event") == "Newchannel")
    rows = []
    for row in json.loads(CDR_ROWS.read_text())[scenario]:
        moved = {key: rewrite(value) for key, value in row.items()}
        start = datetime.strptime(row["calldate"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) + shift
        moved["calldate"] = start.strftime("%Y-%m-%d %H:%M:%S")
        rows.append(moved)
    ended = [e for e in CallInterpreter().feed_many(fresh) if isinstance(e, CallEnded)]
    recording = ended[0].summary.recording if ended else None
    if recording:  # as FreePBX writes it: the bare file name, found by the agent in its recordings directory
        rows = [row | {"recordingfile": PurePosixPath(recording).name} for row in rows]
    return ChaosCall(number, scenario, path, fresh, rows, call_id, recording)


def _moved_recording_path(path: str, shift: timedelta, started: datetime) -> str:
    """``path`` filed under the day the call ``started`` and its name stamp moved by ``shift``: the agent looks for
    a CDR's bare file name under the call's own day (``edge_agent.recordings.paths.cdr_candidates``), so a call
    replayed today must be filed under today, not under the day the lab recorded it."""

    def stamp(match: re.Match[str]) -> str:
        moment = datetime.strptime(match[1], "%Y%m%d-%H%M%S").replace(tzinfo=UTC) + shift
        return moment.strftime("-%Y%m%d-%H%M%S-")

    return _NAME_STAMP.sub(stamp, _DAY_FOLDER.sub(started.strftime("/%Y/%m/%d/"), path))
