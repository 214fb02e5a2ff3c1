"""Reading action headers and building responses the way manager.c does (header order included)."""

from __future__ import annotations

from edge_agent.ami.framing import AmiMessage

__all__ = ["header", "list_complete", "response"]


def header(action: AmiMessage, name: str) -> str:
    """``astman_get_header()``: keys are case-insensitive; a repeated key yields its first value."""
    lowered = name.lower()
    for key, value in action.items():
        if key.lower() == lowered:
            return value.split("\n", 1)[0]
    return ""


def response(
    action: AmiMessage,
    status: str,
    message: str | None = None,
    *,
    event_list: str | None = None,
    **extra: str,
) -> AmiMessage:
    """``astman_send_response_full()``: Response, ActionID (echoed when sent), EventList, Message, extras."""
    result: AmiMessage = {"Response": status}
    action_id = header(action, "ActionID")
    if action_id:
        result["ActionID"] = action_id
    if event_list is not None:
        result["EventList"] = event_list
    if message is not None:
        result["Message"] = message
    result.update(extra)
    return result


def list_complete(action: AmiMessage, event: str, count: int) -> AmiMessage:
    """``astman_send_list_complete()``: the ``...Complete`` event that closes an ``EventList: start``."""
    result: AmiMessage = {"Event": event}
    action_id = header(action, "ActionID")
    if action_id:
        result["ActionID"] = action_id
    result["EventList"] = "Complete"
    result["ListItems"] = str(count)
    return result
