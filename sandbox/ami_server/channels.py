"""The live-channel table the fake PBX keeps from the events it has sent, so CoreShowChannels tells the truth.

Asterisk answers CoreShowChannels from its channel snapshot cache; the fake has no channels of its own, so
it replays the snapshot logic on the event stream: ``Newchannel`` creates, every event carrying a channel
block (plain or with a role prefix such as ``Dest``) refreshes it, including a changed ``Linkedid`` after
bridging or a transfer, ``Newexten`` sets the running application, ``BridgeEnter``/``BridgeLeave`` the
bridge, ``Rename`` the name, and ``Hangup`` removes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

from edge_agent.ami.framing import AmiMessage

__all__ = ["CHANNEL_BLOCK", "Channel", "ChannelTable"]

#: ``ast_manager_build_channel_state_string_prefix()`` order (Asterisk 22).
CHANNEL_BLOCK: Final = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)
_DEFAULTS: Final = {
    "ChannelState": "0",
    "ChannelStateDesc": "Down",
    "CallerIDNum": "<unknown>",
    "CallerIDName": "<unknown>",
    "ConnectedLineNum": "<unknown>",
    "ConnectedLineName": "<unknown>",
    "Language": "en",
    "AccountCode": "",
    "Context": "",
    "Exten": "",
    "Priority": "1",
}
#: Role prefixes under which events carry further channel blocks (B4 of the protocol reference).
_PREFIXES: Final = (
    "",
    "Dest",
    "Transferer",
    "Transferee",
    "OrigTransferer",
    "SecondTransferer",
    "LocalOne",
    "LocalTwo",
    "Source",
)


@dataclass
class Channel:
    block: dict[str, str]
    created: float = field(default_factory=time.monotonic)
    application: str = ""
    application_data: str = ""
    bridge_id: str = ""

    @property
    def uniqueid(self) -> str:
        return self.block["Uniqueid"]

    @property
    def name(self) -> str:
        return self.block["Channel"]

    def duration(self, now: float | None = None) -> str:
        seconds = int((time.monotonic() if now is None else now) - self.created)
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ChannelTable:
    """Channels by Uniqueid, in creation order (the order CoreShowChannels lists them)."""

    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}
        self._gone: set[str] = set()

    def __len__(self) -> int:
        return len(self._channels)

    def snapshot(self) -> list[Channel]:
        return list(self._channels.values())

    def get(self, uniqueid: str) -> Channel | None:
        return self._channels.get(uniqueid)

    def clear(self) -> None:
        self._channels.clear()
        self._gone.clear()

    def apply(self, event: AmiMessage) -> None:
        """Update the table from one event the PBX sent."""
        name = event.get("Event", "")
        if name == "Newchannel":
            self._gone.discard(event.get("Uniqueid", ""))  # a replayed trace reuses ids
        elif name == "Hangup":
            uniqueid = event.get("Uniqueid", "")
            self._channels.pop(uniqueid, None)
            self._gone.add(uniqueid)
            return
        for prefix in _PREFIXES:
            self._refresh(event, prefix, create=name == "Newchannel" and not prefix)
        channel = self._channels.get(event.get("Uniqueid", ""))
        if channel is None:
            return
        if name == "Newexten":
            channel.application = event.get("Application", "")
            channel.application_data = event.get("AppData", "")
        elif name == "BridgeEnter":
            channel.bridge_id = event.get("BridgeUniqueid", "")
        elif name == "BridgeLeave":
            channel.bridge_id = ""
        elif name == "Rename" and event.get("Newname"):
            channel.block["Channel"] = event["Newname"]

    def _refresh(self, event: AmiMessage, prefix: str, *, create: bool) -> None:
        uniqueid = event.get(prefix + "Uniqueid")
        if not uniqueid or uniqueid in self._gone:
            return
        channel = self._channels.get(uniqueid)
        if channel is None:
            # Adopt a channel first seen mid-life (a trace that starts in the middle of a call), but only
            # from a full block, so a stray id in an unrelated header never invents a channel.
            if not create and prefix + "ChannelState" not in event:
                return
            block = dict(_DEFAULTS)
            block["Channel"] = event.get(prefix + "Channel", "")
            block["Uniqueid"] = uniqueid
            block["Linkedid"] = uniqueid
            channel = self._channels[uniqueid] = Channel(block)
        for key in CHANNEL_BLOCK:
            value = event.get(prefix + key)
            if value is not None and key != "Uniqueid":
                channel.block[key] = value
