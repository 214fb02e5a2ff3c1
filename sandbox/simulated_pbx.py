"""A PBX made of recordings: calls recorded on the Asterisk 22 lab, replayed over a real AMI socket (the fake AMI
server), with fresh ids each time so they can overlap, and Originate answered the way Asterisk answers it — by
replaying a recorded outbound call that carries the command's id; and the WAV files MixMonitor leaves
(:func:`write_wav`).

For the demo, the benchmarks and tests that need calls without the lab.
"""

from __future__ import annotations

import re
import wave
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.ami.framing import AmiMessage
from edge_agent.calls.interpreter import COMMAND_ID_VARIABLE, ORIGINATE_ACTION_PREFIX
from edge_agent.trace import read_trace
from sandbox.ami_server.messages import header
from sandbox.ami_server.originate import REASON_ANSWERED, REASON_FAILED, OriginateOutcome
from sandbox.ami_server.server import FakeAmiServer

__all__ = ["TRACES", "SimulatedPbx", "linkedid_of", "recorded_call", "tagged_for_command", "write_wav"]

TRACES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "traces"
RECORDED_CUSTOMER = "79261234567"  # the caller of every recorded inbound call
_CHANNEL_SUFFIX = re.compile(r"-([0-9a-f]{8})(?=[;,]|$)")


def recorded_call(name: str, number: int | None = None, *, caller: str | None = None) -> list[AmiMessage]:
    """Lab trace ``name``; with ``number``, its Linkedid/Uniqueids and channel names made unique (calls may overlap);
    with ``caller``, the customer's number replaced (a call from a new client)."""
    messages = read_trace(TRACES / f"{name}.jsonl")

    def rewrite(value: str) -> str:
        if number is not None:
            value = value.replace("pbx-", f"b{number}-")
            value = _CHANNEL_SUFFIX.sub(lambda m: f"-{number:04x}{m.group(1)[4:]}", value)
        if caller is not None:
            value = value.replace(RECORDED_CUSTOMER, caller)
        return value

    return [{key: rewrite(value) for key, value in message.items()} for message in messages]


def linkedid_of(messages: list[AmiMessage]) -> str:
    """The call's id: its first channel's Linkedid (each recording holds one call)."""
    return next(m["Linkedid"] for m in messages if m.get("Event") == "Newchannel")


def tagged_for_command(messages: list[AmiMessage], command_id: str) -> list[AmiMessage]:
    """A recorded outbound call as the agent's Originate makes it: the command's variable set on the call's first
    channel right after it appears (Asterisk sets an Originate's variables on the new channel)."""
    first = next(i for i, m in enumerate(messages) if m.get("Event") == "Newchannel")
    fields = {key: value for key, value in messages[first].items() if key not in ("Event", "Privilege")}
    # "Event" first: the agent's server-side filters match the event's text from its first line
    varset: AmiMessage = {"Event": "VarSet", "Privilege": "dialplan,all", **fields}
    varset |= {"Variable": COMMAND_ID_VARIABLE, "Value": command_id}
    return [*messages[: first + 1], varset, *messages[first + 1 :]]


@dataclass
class SimulatedPbx:
    """Plays recorded calls on ``ami``; answers each Originate by the next ``script`` entry (``True``: the call goes
    through and the recorded outbound call plays; ``False``: Asterisk cannot ring the user). An empty script:
    every Originate goes through."""

    ami: FakeAmiServer
    speed: float | None = 2.0
    script: list[bool] = field(default_factory=list)
    originates: list[AmiMessage] = field(default_factory=list)
    _numbers: int = 0

    def __post_init__(self) -> None:
        self.ami.on_originate = self.on_originate

    def _next_number(self) -> int:
        self._numbers += 1
        return self._numbers

    async def play(self, name: str, *, caller: str | None = None) -> str:
        """Play recorded call ``name`` (fresh ids) at ``speed``; returns its Linkedid once it has been played."""
        messages = recorded_call(name, self._next_number(), caller=caller)
        await self.ami.play(messages, speed=self.speed)
        return linkedid_of(messages)

    async def on_originate(self, action: AmiMessage) -> OriginateOutcome:
        self.originates.append(action)
        works = self.script.pop(0) if self.script else True
        if not works:
            return OriginateOutcome(reason=REASON_FAILED)
        command_id = header(action, "ActionID").removeprefix(ORIGINATE_ACTION_PREFIX)
        call = recorded_call("outbound_answered", self._next_number())
        await self.ami.play(tagged_for_command(call, command_id), speed=self.speed)
        return OriginateOutcome(reason=REASON_ANSWERED)


def write_wav(path: Path, seconds: float = 1.0) -> None:
    """A real 8 kHz mono WAV, as MixMonitor writes for a phone call."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = bytes((n * 31) % 251 for n in range(int(16000 * seconds)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)
