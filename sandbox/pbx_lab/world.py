"""Control of the `world` instance (phones + carrier) through its AMI (127.0.0.1:5039, user `world`).

World-side channels:
  * calls the world places into the PBX (`call_in`, `phone_dial`) are `PJSIP/pbx-trunk-…` (carrier) or
    `PJSIP/pbx-phone-…` (a phone); their Uniqueid is chosen by us (`ChannelId`), so we always know them;
  * calls the PBX sends to a phone or an outside number arrive as `PJSIP/pbx-in-…` in context `from-pbx`,
    which raises `UserEvent: WorldRule` (Number, Rule) before applying the rule from AstDB.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from sandbox.pbx_lab.ami import AmiClient, AmiError, FieldValue, Message
from sandbox.pbx_lab.paths import WORLD

PHONES = ("101", "102", "103", "104")
CARRIER_ENDPOINT = "pbx-trunk"
PHONE_ENDPOINT = "pbx-phone"
ANONYMOUS = "anonymous"


@dataclass
class WorldChannel:
    """One channel in the world instance."""

    uniqueid: str
    role: str  # "phone" | "customer"
    number: str  # the extension, or the outside party's number ("anonymous" for a withheld caller)
    direction: str  # "to_pbx" (the world placed it) | "from_pbx" (the PBX called the world)
    channel: str = ""
    dialed: str = ""  # what the world dialled into the PBX (DID or number), for to_pbx channels
    created: float = field(default_factory=time.monotonic)
    answered_at: float | None = None
    hungup_at: float | None = None
    cause: str = ""

    @property
    def alive(self) -> bool:
        return self.hungup_at is None

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


class World:
    def __init__(self, ami: AmiClient) -> None:
        self.ami = ami
        self.channels: dict[str, WorldChannel] = {}
        self._ids = itertools.count(1)
        self._run = f"{int(time.time())}"
        ami.listeners.append(self._on_event)

    @classmethod
    async def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = WORLD.ami_port,
        username: str = WORLD.ami_user,
        secret: str = WORLD.ami_secret,
    ) -> World:
        ami = AmiClient(host, port, username, secret)
        await ami.connect()
        return cls(ami)

    async def close(self) -> None:
        await self.ami.close()

    # ---------------------------------------------------------------------------------------- tracking
    def _on_event(self, m: Message) -> None:
        ev = m.event
        uid = m["Uniqueid"]
        if ev == "UserEvent" and m["UserEvent"] == "WorldRule":
            number = m["Number"]
            role = "phone" if number in PHONES or (len(number) <= 4 and number.startswith("1")) else "customer"
            wc = self.channels.get(uid)
            if wc is None:
                wc = WorldChannel(uniqueid=uid, role=role, number=number, direction="from_pbx")
                self.channels[uid] = wc
            wc.channel = m["Channel"]
            return
        wc = self.channels.get(uid)
        if wc is None:
            return
        if ev == "Newchannel" or (m["Channel"] and not wc.channel):
            wc.channel = m["Channel"]
        if ev == "Newstate" and m["ChannelState"] == "6" and wc.answered_at is None:
            wc.answered_at = time.monotonic()
        elif ev == "Hangup":
            wc.hungup_at = time.monotonic()
            wc.cause = m["Cause"]

    def live(self, *, role: str | None = None, number: str | None = None) -> list[WorldChannel]:
        return [
            c
            for c in self.channels.values()
            if c.alive and (role is None or c.role == role) and (number is None or c.number == number)
        ]

    # ---------------------------------------------------------------------------------------- behaviour
    async def set_behavior(self, number: str, rule: str) -> None:
        """Rule for calls the PBX sends to `number` (an extension or an outside number):
        `answer[:<hangup_after>]`, `ring`, `answer_after:<s>[:<hangup_after>]`, `busy`, `congestion`
        (`failed`), `unavailable`."""
        resp = await self.ami.action("DBPut", Family="behavior", Key=number, Val=rule)
        if resp["Response"] != "Success":
            raise AmiError(f"DBPut behavior/{number}: {resp['Message']}")

    async def clear_behaviors(self) -> None:
        await self.ami.action("DBDelTree", Family="behavior")

    # ------------------------------------------------------------------------------------------- calls
    def _new_id(self) -> str:
        return f"world-{self._run}.{next(self._ids)}"

    async def _originate(
        self,
        uid: str,
        endpoint: str,
        dialed: str,
        callerid: str,
        hangup_after: float | None,
        variables: list[str],
        ring_timeout: float,
    ) -> None:
        variables = list(variables)
        if hangup_after is not None:
            variables.append(f"HANGUP_AFTER={hangup_after:g}")
        fields: dict[str, FieldValue] = {
            "Channel": f"PJSIP/{dialed}@{endpoint}",
            "Context": "world-talk",
            "Exten": "s",
            "Priority": "1",
            "CallerID": callerid,
            "Timeout": str(int(ring_timeout * 1000)),
            "ChannelId": uid,
            "Async": "true",
        }
        if variables:
            fields["Variable"] = variables
        resp = await self.ami.request("Originate", fields)
        if resp["Response"] != "Success":
            self.channels.pop(uid, None)
            raise AmiError(f"world Originate {dialed}@{endpoint}: {resp['Message']}")

    async def call_in(
        self,
        caller_number: str | None,
        did: str,
        *,
        hangup_after: float | None = None,
        ring_timeout: float = 60.0,
    ) -> WorldChannel:
        """The carrier sends a call for `did` into the PBX from `caller_number` (None: anonymous)."""
        if caller_number is None:
            callerid = '"Anonymous" <anonymous>'
            variables = ["CALLERID(pres)=prohib", "WORLD_ROLE=customer"]
            number = ANONYMOUS
        else:
            callerid = f'"{caller_number}" <{caller_number}>'
            variables = ["WORLD_ROLE=customer"]
            number = caller_number
        uid = self._new_id()
        wc = WorldChannel(uniqueid=uid, role="customer", number=number, direction="to_pbx", dialed=did)
        self.channels[uid] = wc
        await self._originate(uid, CARRIER_ENDPOINT, did, callerid, hangup_after, variables, ring_timeout)
        return wc

    async def phone_dial(
        self,
        ext: str,
        number: str,
        *,
        hangup_after: float | None = None,
        ring_timeout: float = 60.0,
    ) -> WorldChannel:
        """Phone `ext` dials `number` on the PBX (From user = ext, so the PBX finds endpoint `ext`)."""
        uid = self._new_id()
        wc = WorldChannel(uniqueid=uid, role="phone", number=ext, direction="to_pbx", dialed=number)
        self.channels[uid] = wc
        await self._originate(
            uid, PHONE_ENDPOINT, number, f'"Ext {ext}" <{ext}>', hangup_after, ["WORLD_ROLE=phone"], ring_timeout
        )
        return wc

    async def hangup(self, wc: WorldChannel) -> None:
        if wc.alive and wc.channel:
            await self.ami.action("Hangup", Channel=wc.channel, Cause="16")

    async def hangup_phone(self, ext: str) -> int:
        """Hang up every live world channel of phone `ext` (the phone puts the receiver down)."""
        chans = self.live(role="phone", number=ext)
        for c in chans:
            await self.hangup(c)
        return len(chans)

    async def hangup_customer(self, number: str | None) -> int:
        """Hang up every live world channel of the outside party `number` (None: the anonymous caller)."""
        chans = self.live(role="customer", number=number or ANONYMOUS)
        for c in chans:
            await self.hangup(c)
        return len(chans)

    async def hangup_all(self) -> None:
        _, events = await self.ami.action_list("CoreShowChannels")
        for e in events:
            await self.ami.action("Hangup", Channel=e["Channel"])

    async def wait_answered(self, wc: WorldChannel, timeout: float = 10.0) -> None:
        await self.ami.wait_event(
            lambda m: m.event == "Newstate" and m["Uniqueid"] == wc.uniqueid and m["ChannelState"] == "6",
            timeout=timeout,
        )
