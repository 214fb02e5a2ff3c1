"""What the agent does with the AMI stream: interpret it into call events, or record it to a trace."""

from __future__ import annotations

from collections.abc import Callable

from edge_agent.ami.framing import AmiMessage
from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.trace import TraceWriter
from wire_protocol.call_events import CallEvent

__all__ = ["InterpretingSink", "RecordingSink"]


class InterpretingSink:
    """Feeds the interpreter and hands every call event it produces to ``emit``."""

    def __init__(self, interpreter: CallInterpreter, emit: Callable[[CallEvent], None]) -> None:
        self.interpreter = interpreter
        self._emit = emit

    def on_snapshot(self, live_channels: list[AmiMessage], at: float) -> None:
        for event in self.interpreter.reconcile(live_channels, at):
            self._emit(event)

    def on_event(self, message: AmiMessage) -> None:
        for event in self.interpreter.feed(message):
            self._emit(event)


class RecordingSink:
    """Writes each event to a trace file (the snapshot is not an event stream and is not recorded)."""

    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer

    def on_snapshot(self, live_channels: list[AmiMessage], at: float) -> None:
        pass

    def on_event(self, message: AmiMessage) -> None:
        fields = dict(message)
        received_at = fields.pop("_ts", None)
        self.writer.write(fields, float(received_at) if received_at else None)
