"""Test control of the PBX through its AMI as user `lab` (all permissions): find channels, hang up,
transfer (BlindTransfer / Atxfer actions), wait until the PBX is idle, and keep the PBX event stream so
scenarios can read ids (Linkedid) and recording names of the calls they place."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from sandbox.pbx_lab.ami import AmiClient, AmiError, Message
from sandbox.pbx_lab.paths import PBX

EXT_CHANNEL = re.compile(r"^PJSIP/(?P<ext>[^-/@]+)-[0-9a-f]+$")


@dataclass(frozen=True)
class PbxChannel:
    channel: str
    uniqueid: str
    linkedid: str
    state: str  # ChannelStateDesc: Up, Ring, Ringing, Down ...
    context: str
    exten: str
    application: str
    bridge: str

    @property
    def extension(self) -> str | None:
        m = EXT_CHANNEL.match(self.channel)
        return m.group("ext") if m else None


class PbxAdmin:
    def __init__(self, ami: AmiClient) -> None:
        self.ami = ami

    @classmethod
    async def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = PBX.ami_port,
        username: str = PBX.ami_user,
        secret: str = PBX.ami_secret,
    ) -> PbxAdmin:
        ami = AmiClient(host, port, username, secret)
        await ami.connect()
        return cls(ami)

    async def close(self) -> None:
        await self.ami.close()

    # ------------------------------------------------------------------------------------------ channels
    async def channels(self) -> list[PbxChannel]:
        resp, events = await self.ami.action_list("CoreShowChannels")
        if resp["Response"] != "Success":
            raise AmiError(f"CoreShowChannels: {resp['Message']}")
        return [
            PbxChannel(
                channel=e["Channel"],
                uniqueid=e["Uniqueid"],
                linkedid=e["Linkedid"],
                state=e["ChannelStateDesc"],
                context=e["Context"],
                exten=e["Exten"],
                application=e["Application"],
                bridge=e["BridgeId"],
            )
            for e in events
            if e.event == "CoreShowChannel"
        ]

    async def channel_of(self, ext: str, *, state: str | None = None, linkedid: str | None = None) -> str | None:
        """The PBX's PJSIP channel of extension `ext` (`PJSIP/101-0000000a`), optionally in `state` (e.g. Up)
        and on call `linkedid`; the newest one when there are several."""
        found = [
            c
            for c in await self.channels()
            if c.extension == ext
            and (state is None or c.state == state)
            and (linkedid is None or c.linkedid == linkedid)
        ]
        return found[-1].channel if found else None

    async def wait_channel(
        self, ext: str, *, state: str | None = None, linkedid: str | None = None, timeout: float = 10.0
    ) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            chan = await self.channel_of(ext, state=state, linkedid=linkedid)
            if chan:
                return chan
            if loop.time() > deadline:
                raise TimeoutError(f"no PBX channel for extension {ext} (state {state}) within {timeout} s")
            await asyncio.sleep(0.2)

    async def hangup(self, channel: str, cause: int = 16) -> None:
        resp = await self.ami.action("Hangup", Channel=channel, Cause=str(cause))
        if resp["Response"] != "Success":
            raise AmiError(f"Hangup {channel}: {resp['Message']}")

    async def channel_count(self) -> int:
        out = await self.ami.command("core show channels count")
        m = re.search(r"(\d+) active channels?", out)
        return int(m.group(1)) if m else 0

    async def wait_idle(self, timeout: float = 10.0, *, linkedids: set[str] | None = None) -> None:
        """Wait until the PBX has no channels (or none of the calls `linkedids`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            chans = await self.channels()
            if linkedids is not None:
                chans = [c for c in chans if c.linkedid in linkedids]
            if not chans:
                return
            if loop.time() > deadline:
                names = ", ".join(c.channel for c in chans)
                raise TimeoutError(f"PBX not idle after {timeout} s: {names}")
            await asyncio.sleep(0.2)

    async def hangup_all(self) -> None:
        for c in await self.channels():
            await self.ami.action("Hangup", Channel=c.channel)

    # ------------------------------------------------------------------------------------------ transfers
    async def blind_transfer(self, ext_from: str, to_ext: str, *, context: str = "from-internal") -> Message:
        """Extension `ext_from` (in a call) blind-transfers its peer to `to_ext` (AMI `BlindTransfer`)."""
        chan = await self.wait_channel(ext_from, state="Up")
        resp = await self.ami.action("BlindTransfer", Channel=chan, Exten=to_ext, Context=context)
        if resp["Response"] != "Success":
            raise AmiError(f"BlindTransfer {chan} -> {to_ext}: {resp['Message']}")
        return resp

    async def attended_transfer(self, ext_from: str, to_ext: str, *, context: str = "from-internal") -> str:
        """Extension `ext_from` starts an attended transfer to `to_ext` (AMI `Atxfer`: the features.conf
        `atxfer` code is played on its channel; its peer is held while it consults `to_ext`).  Returns the
        transferer's channel; complete with `complete_attended_transfer` (the transferer hangs up)."""
        chan = await self.wait_channel(ext_from, state="Up")
        resp = await self.ami.action("Atxfer", Channel=chan, Exten=to_ext, Context=context)
        if resp["Response"] != "Success":
            raise AmiError(f"Atxfer {chan} -> {to_ext}: {resp['Message']}")
        return chan

    async def complete_attended_transfer(self, transferer_channel: str) -> None:
        """Complete an Atxfer consultation the way a phone user does: the transferer hangs up."""
        await self.hangup(transferer_channel)

    # ------------------------------------------------------------------------------------------ call facts
    async def linkedid_of_first(self, predicate_channel: str, *, since: int, timeout: float = 10.0) -> str:
        """Linkedid of the first channel created after `since` whose name starts with `predicate_channel`."""
        m = await self.ami.wait_event(
            lambda e: e.event == "Newchannel" and e["Channel"].startswith(predicate_channel),
            since=since,
            timeout=timeout,
        )
        return m["Linkedid"]

    def recording_of(self, linkedid: str, *, since: int = 0) -> str | None:
        """The file name MixMonitor was given on call `linkedid` (from `MIXMONITOR_FILENAME`)."""
        for e in self.ami.events(since):
            if e.event == "VarSet" and e["Variable"] == "MIXMONITOR_FILENAME" and e["Linkedid"] == linkedid:
                return e["Value"]
        return None
