"""Small builders for synthetic AMI events, for edge cases real traces cannot show (bad input, gaps)."""

from __future__ import annotations

from edge_agent.ami.framing import AmiMessage


class Pbx:
    """Hands out Uniqueids and a clock so synthetic sequences stay consistent."""

    def __init__(self, start: float = 1_760_000_000.0) -> None:
        self.now = start
        self._seq = 0

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds

    def uid(self) -> str:
        self._seq += 1
        return f"pbx-{int(self.now)}.{self._seq}"

    def _base(self, event: str, **fields: str) -> AmiMessage:
        return {"Event": event, "_ts": repr(self.now), **fields}

    def newchannel(self, channel: str, uid: str, linkedid: str | None = None, **fields: str) -> AmiMessage:
        return self._base(
            "Newchannel", Channel=channel, Uniqueid=uid, Linkedid=linkedid or uid, ChannelState="0", **fields
        )

    def dial_begin(
        self, caller: tuple[str, str] | None, dest: tuple[str, str], linkedid: str, dialstring: str
    ) -> AmiMessage:
        fields = {"DestChannel": dest[0], "DestUniqueid": dest[1], "DestLinkedid": linkedid, "DialString": dialstring}
        if caller:
            fields |= {"Channel": caller[0], "Uniqueid": caller[1], "Linkedid": linkedid}
        return self._base("DialBegin", **fields)

    def dial_end(self, caller: tuple[str, str] | None, dest: tuple[str, str], linkedid: str, status: str) -> AmiMessage:
        fields = {"DestChannel": dest[0], "DestUniqueid": dest[1], "DestLinkedid": linkedid, "DialStatus": status}
        if caller:
            fields |= {"Channel": caller[0], "Uniqueid": caller[1], "Linkedid": linkedid}
        return self._base("DialEnd", **fields)

    def bridge_enter(self, channel: tuple[str, str], linkedid: str, bridge: str = "b1") -> AmiMessage:
        return self._base(
            "BridgeEnter",
            Channel=channel[0],
            Uniqueid=channel[1],
            Linkedid=linkedid,
            BridgeUniqueid=bridge,
            BridgeTechnology="simple_bridge",
        )

    def ringing(self, channel: tuple[str, str], linkedid: str) -> AmiMessage:
        return self._base(
            "Newstate",
            Channel=channel[0],
            Uniqueid=channel[1],
            Linkedid=linkedid,
            ChannelState="5",
            ChannelStateDesc="Ringing",
        )

    def hangup(self, channel: tuple[str, str], linkedid: str, cause: str = "16") -> AmiMessage:
        return self._base("Hangup", Channel=channel[0], Uniqueid=channel[1], Linkedid=linkedid, Cause=cause)
