"""The call interpreter: raw AMI messages in, call events out. Pure code: no sockets, no clock."""

from edge_agent.calls.channels import ChannelKind, ChannelRules, ParsedChannel
from edge_agent.calls.interpreter import CallInterpreter

__all__ = ["CallInterpreter", "ChannelKind", "ChannelRules", "ParsedChannel"]
