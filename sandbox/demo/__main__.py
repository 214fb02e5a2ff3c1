"""The whole product on this machine: a PBX, the edge agent, the cloud, the license server and a Bitrix24 portal.

``make demo`` starts cloud-local (websocket API, REST, moto server as AWS, the license server), the Bitrix24
emulator with its web page, installs our app into its portal the way Bitrix24 does, creates an agent token,
connects an edge agent to a PBX, and plays calls: an inbound call to a queue, a missed call from a new number,
an outbound call, and a click-to-call made from the portal's page. It narrates what happens on the PBX and in
the CRM, ends with a table, prints the URLs and keeps running until Ctrl-C.

The PBX is a simulator (real calls recorded on the Asterisk 22 lab, replayed over a real AMI socket, and
answering Originate), or with ``--pbx lab`` (``make demo PBX=lab``) the real Asterisk lab. ``--once`` checks
every expected CRM outcome and exits (0 when all happened).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import TypeAdapter

from cloud.calls.store import list_calls, list_events
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.bitrix24.portal import Call
from sandbox.bitrix24.testing import post_form
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.demo.narrate import crm_lines, describe, outcome_table
from sandbox.portal_stack import ANNA, BORIS, DOMAIN, OWNER, PortalStack, card_users, portal_stack, until
from sandbox.simulated_pbx import SimulatedPbx
from wire_protocol.call_events import CallEvent, CallRecording

CALL_EVENT: TypeAdapter[CallEvent] = TypeAdapter(CallEvent)

OUTSIDE = "79031112233"  # the client Anna calls, and clicks in Bitrix24
NAMES = {OWNER: "Olga (owner)", ANNA: "Anna (101)", BORIS: "Boris (102)"}


@dataclass
class Expected:
    """What Bitrix24 must show for one call (checked with ``--once``)."""

    type: int
    owner: int
    status: str
    shown: set[int] = field(default_factory=set)
    hidden: set[int] | None = None  # None: not checked (a phone that stops ringing may close its card early)
    lead: bool = False
    legs: int = 1


@dataclass
class Played:
    title: str
    call_id: str  # the PBX's Linkedid, or the click's Bitrix24 CALL_ID
    expected: Expected
    click: bool = False


class Pbx(Protocol):
    """What the demo needs of a PBX: the AMI login for the agent; the calls (each returns its Linkedid)."""

    login: AmiLogin

    async def inbound_queue(self) -> str: ...
    async def missed_from_new_number(self) -> str: ...
    async def outbound(self) -> str: ...
    async def before_click(self) -> None: ...


class SimulatorPbx:
    def __init__(self, ami: FakeAmiServer) -> None:
        self.pbx = SimulatedPbx(ami, speed=2.0)
        self.login = AmiLogin("127.0.0.1", ami.port, "edge", "edge-secret")

    async def inbound_queue(self) -> str:
        return await self.pbx.play("inbound_queue_answered")

    async def missed_from_new_number(self) -> str:
        return await self.pbx.play("inbound_direct_missed")

    async def outbound(self) -> str:
        return await self.pbx.play("outbound_answered")

    async def before_click(self) -> None:
        pass


@contextlib.asynccontextmanager
async def simulator() -> AsyncIterator[Pbx]:
    user = UserSpec("edge-secret", read="system,call,agent,dialplan,cdr", write="system,originate")
    async with FakeAmiServer({"edge": user}) as ami:
        yield SimulatorPbx(ami)


class LabPbx:
    def __init__(self, live: Any) -> None:
        from sandbox.pbx_lab import scenarios

        self.live, self.scenarios = live, scenarios
        edge = live.edge
        self.login = AmiLogin(edge.host, edge.port, edge.username, edge.secret)

    async def _run(self, name: str) -> str:
        (expected,) = await self.scenarios.SCENARIOS[name](self.live.scenario_lab)
        return str(expected["call_id"])

    async def inbound_queue(self) -> str:
        return await self._run("inbound_queue_answered")

    async def missed_from_new_number(self) -> str:
        return await self._run("inbound_direct_missed")

    async def outbound(self) -> str:
        return await self._run("outbound_answered")

    async def before_click(self) -> None:
        await self.live.admin.wait_idle()
        await self.live.world.set_behavior("101", "answer")
        await self.live.world.set_behavior(self.scenarios.OUTSIDE, "answer:3")


@contextlib.asynccontextmanager
async def lab() -> AsyncIterator[Pbx]:
    from sandbox.pbx_lab import Lab
    from sandbox.pbx_lab.admin import PbxAdmin
    from sandbox.pbx_lab.live import LiveLab
    from sandbox.pbx_lab.world import World

    the_lab = Lab()
    was_up = the_lab.is_up()
    say("Starting the Asterisk 22 lab (the first time builds a Debian chroot: a few minutes) ...")
    await asyncio.to_thread(the_lab.up)
    world, admin = await World.connect(), await PbxAdmin.connect()
    try:
        yield LabPbx(LiveLab(world=world, admin=admin, paths=the_lab.paths, started_here=not was_up))
    finally:
        await world.hangup_all()
        await world.close()
        await admin.close()
        if not was_up:
            await asyncio.to_thread(the_lab.down)


def say(text: str = "") -> None:
    print(text, flush=True)


async def settle(stack: PortalStack, call_id: str, *, click: bool = False) -> bool:
    if click:
        return await until(lambda: call_id in stack.portal.calls and stack.portal.calls[call_id].finished, 60)
    return await until(lambda: stack.crm_done({call_id}), 60)


def pbx_lines(stack: PortalStack, call_id: str, click: bool) -> list[str]:
    """What the agent reported about the call (the cloud's stored events), as a person would read it."""
    calls = list_calls(stack.rt, stack.tenant)
    if click:  # the PBX call the click placed carries the click's command id
        calls = [c for c in calls if c.command_id == f"c2c:{call_id}"]
    else:
        calls = [c for c in calls if c.call_id == call_id]
    if not calls:
        return ["(no call reported)"]
    wanted = calls[0]
    stored = [e for e in list_events(stack.rt, stack.tenant, wanted.agent_id) if e["call_id"] == wanted.call_id]
    events = [CALL_EVENT.validate_json(e["event"]) for e in sorted(stored, key=lambda e: int(e["call_seq"]))]
    return [describe(event) for event in events if not isinstance(event, CallRecording)]


def calls_of(stack: PortalStack, played: Played) -> list[Call]:
    if played.click:
        with stack.portal.lock:
            return [stack.portal.calls[played.call_id]]
    return stack.registrations(played.call_id)


def mismatches(stack: PortalStack, played: Played) -> list[str]:
    legs, want = calls_of(stack, played), played.expected
    if len(legs) != want.legs:
        return [f"{len(legs)} registrations, expected {want.legs}"]
    last, first = legs[-1], legs[0]
    problems = []
    if (first.type, last.finish_user_id, last.status_code) != (want.type, want.owner, want.status):
        problems.append(
            f"type {first.type}, finished by {last.finish_user_id} with {last.status_code}; "
            f"expected type {want.type}, {want.owner}, {want.status}"
        )
    if not last.finished:
        problems.append("not finished")
    shown = set().union(*(card_users(leg, "show") for leg in legs))
    if want.shown and shown != want.shown:
        problems.append(f"cards shown to {sorted(shown)}, expected {sorted(want.shown)}")
    hidden = set().union(*(card_users(leg, "hide") for leg in legs))
    if want.hidden is not None and hidden != want.hidden:
        problems.append(f"cards hidden early for {sorted(hidden)}, expected {sorted(want.hidden)}")
    if want.lead and first.created_lead is None:
        problems.append("no lead created for the new number")
    return problems


async def play_calls(stack: PortalStack, pbx: Pbx, b24_url: str) -> list[Played]:
    played: list[Played] = []

    async def step(title: str, make: Callable[[], Awaitable[str]], expected: Expected, click: bool = False) -> None:
        say(f"\n== {title}")
        call_id = await make()
        done = await settle(stack, call_id, click=click)
        item = Played(title, call_id, expected, click)
        for line in await asyncio.to_thread(pbx_lines, stack, call_id, click):
            say("   PBX: " + line)
        for line in crm_lines(calls_of(stack, item), stack.portal, NAMES):
            say("   Bitrix24: " + line)
        if not done:
            say("   (the CRM did not finish this call within 60 s)")
        played.append(item)

    await step(
        "A new number calls Anna's direct line; nobody answers",
        pbx.missed_from_new_number,
        Expected(type=2, owner=ANNA, status="304", shown={ANNA}, lead=True),
    )
    await step(
        "The same client calls the sales queue: Anna's and Boris's phones ring together, Boris answers",
        pbx.inbound_queue,
        Expected(type=2, owner=BORIS, status="200", shown={ANNA, BORIS}, hidden={ANNA}),
    )
    await step(
        "Anna calls a client from her desk phone",
        pbx.outbound,
        Expected(type=1, owner=ANNA, status="200", shown={ANNA}),
    )

    async def click() -> str:
        await pbx.before_click()
        say(f"   Anna clicks {OUTSIDE} on a CRM page in Bitrix24 ...")
        answer = await asyncio.to_thread(
            post_form, f"{b24_url}/_emulator/portals/{DOMAIN}/click", {"user_id": str(ANNA), "phone": f"+{OUTSIDE}"}
        )
        return str(answer.json()["CALL_ID"])

    await step(
        "Click-to-call from Bitrix24: Anna's phone rings, then the client's",
        click,
        Expected(type=1, owner=ANNA, status="200"),
        click=True,
    )
    return played


async def run(args: argparse.Namespace) -> int:
    say("pbxlink demo: a PBX, the edge agent, the cloud (local AWS), the license server and a Bitrix24 portal.\n")
    async with portal_stack(table_prefix="demo-") as stack:
        b24_url = stack.b24_url
        say(f"Bitrix24 portal {DOMAIN} (emulator): users Olga (owner), Anna (ext. 101), Boris (ext. 102)")
        say("Our app was installed into it the way Bitrix24 installs apps; the license server gave it a trial.")
        token = await stack.agent_token("Head office PBX")
        say(f"Agent token created for the PBX: {token[:10]}… (shown once to the admin)")
        pbx_context = lab() if args.pbx == "lab" else simulator()
        with tempfile.TemporaryDirectory() as data_dir:
            async with pbx_context as pbx, running_agent(pbx.login, stack.cloud.ws_url, token, data_dir):
                where = f"{pbx.login.host}:{pbx.login.port}"
                say(f"edge-agent connected to the PBX's AMI ({where}) and, outbound only, to the cloud")
                played = await play_calls(stack, pbx, b24_url)
                problems = {p.title: mismatches(stack, p) for p in played}
                say("\n" + outcome_table([(p.title, calls_of(stack, p), not problems[p.title]) for p in played], NAMES))
                audit = stack.portal.audit()
                if audit["open_cards"] or audit["unfinished"]:
                    problems["portal"] = [f"open cards {audit['open_cards']}, unfinished {audit['unfinished']}"]
                say("")
                say(f"Portal page (cards, call log, leads): {b24_url}/portal/{DOMAIN}")
                say(f"Portal state as JSON:                 {b24_url}/_emulator/state")
                say(f"Settings page (opened by Bitrix24):   {stack.cloud.rest_url}/b24/app")
                failed = {title: p for title, p in problems.items() if p}
                if failed:
                    say("\nOutcomes that differ from what was expected:")
                    for title, lines in failed.items():
                        say(f"  {title}: {'; '.join(lines)}")
                else:
                    say("\nEvery call reached the CRM as expected.")
                if args.once:
                    return 1 if failed else 0
                say("Running; press Ctrl-C to stop.")
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="check every outcome and exit (0 = all as expected)")
    parser.add_argument("--pbx", choices=("simulator", "lab"), default="simulator")
    parser.add_argument("--verbose", action="store_true", help="also print the components' own log lines")
    args = parser.parse_args(argv)
    # the narration is the output; the components' warnings (e.g. the simulator's recordings, which exist only
    # as names in the recorded calls) would drown it
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="%(name)s: %(message)s")
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
