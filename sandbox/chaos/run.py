"""The fault suite: calls through the whole path while everything that can break, breaks.

Fake AMI (recorded lab calls, fresh ids, CDR rows and MixMonitor files written as a PBX would) → ``edge-agent
run`` as its own process → a TCP relay (cut every ``cut_every`` s) → cloud-local (local API Gateway, the Chalice
app, moto server) → the Bitrix24 emulator (``QUERY_LIMIT_EXCEEDED`` on a share of requests, tokens expiring,
down once). Meanwhile the agent is SIGKILLed and started again and AMI goes away; the calls made while the agent
is blind are the CDR's to bring back. The portal is the judge (:mod:`sandbox.chaos.verdict`).

AMI-side faults (kill, AMI down) are started when no call is in progress: a call cut in half by them is ended
``lost`` by design (docs/cdr-backfill.md, "Limits"), so its true outcome is not what the CRM can show; every call
here is either wholly seen or wholly missed by the agent, and its ground truth known. Link cuts, token expiry,
rate limits and the outage hit at any moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cloud.calls.store import list_calls
from cloud.crm.pipeline import crm_status
from edge_agent.cdr.backfill import COVERED_KEY, SINCE_KEY
from edge_agent.outbox import Outbox, outbox_path
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.bitrix24.portal import Call
from sandbox.chaos.agent_process import AgentProcess
from sandbox.chaos.calls import SCENARIOS, ChaosCall, Source, make_call
from sandbox.chaos.cdr import CdrDatabase
from sandbox.chaos.proxy import CuttableProxy
from sandbox.chaos.verdict import Verdict, judge, render
from sandbox.portal_stack import PortalStack, portal_stack, until
from sandbox.simulated_pbx import write_wav

__all__ = ["ChaosPlan", "ChaosResult", "DisconnectPlan", "run_chaos", "run_disconnect"]

AMI_USER, AMI_SECRET = "edge", "edge-secret"
Blind = Literal["kill", "ami"]


@dataclass(frozen=True)
class ChaosPlan:
    calls: int = 300
    calls_per_second: float = 0.5
    cut_every: float = 20.0  # websocket cuts (seconds)
    kills: int = 2  # SIGKILLs of the agent
    ami_drops: int = 3  # AMI sessions dropped (AMI stays down while calls are made)
    blind_calls: int = 4  # calls made during each kill / AMI drop (and before a kill, with the cloud out of reach)
    outage_seconds: float = 60.0  # the emulator down once
    query_limit_rate: float = 0.2
    expire_every: int = 100
    #: The portal's own leaky bucket (2 requests/s, burst 50) on top. Off by default: a call costs an estimated 4.6
    #: requests here (recording upload and failures included), so 30 calls/min is more than one portal's plan
    #: allows whatever the product does; capacity is bench's subject (docs/performance.md).
    rate_limit: bool = False
    speed: float = 1.0  # recorded pace
    settle_timeout: float = 900.0  # after the last call, for everything to reach the CRM


@dataclass(frozen=True)
class DisconnectPlan:
    """An hour away, compressed: calls while the cloud is unreachable (outbox), then the agent stopped for an hour
    during which ``cdr_calls`` calls happen (CDR rows spread over the hour), then both come back."""

    live_calls: int = 10
    cdr_calls: int = 60
    away_seconds: float = 3600.0
    settle_timeout: float = 600.0


@dataclass
class ChaosResult:
    verdict: Verdict
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def table(self) -> str:
        return render(self.verdict, self.facts)


Say = Callable[[str], None]


@dataclass
class Rig:
    """Everything a run drives: the portal stack, the PBX (AMI, CDR, recordings), the relay, the agent."""

    stack: PortalStack
    ami: FakeAmiServer
    cdr: CdrDatabase
    proxy: CuttableProxy
    agent: AgentProcess
    recordings_root: Path
    data_dir: Path
    say: Say
    run_id: int
    calls: list[ChaosCall] = field(default_factory=list)
    playing: set[asyncio.Task[None]] = field(default_factory=set)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_call(self, path: Source, started_at: float | None = None, scenario: str | None = None) -> ChaosCall:
        number = next(self._numbers)
        names = list(SCENARIOS)
        name = scenario or names[number % len(names)]
        call = make_call(name, number, path, time.time() if started_at is None else started_at, run=self.run_id)
        if call.recording:
            write_wav(self.recordings_root / call.recording.lstrip("/"))
        self.calls.append(call)
        return call

    async def play(self, call: ChaosCall, speed: float) -> None:
        """The call happens on the PBX: its AMI events (to whoever is logged in), then its CDR rows."""
        await self.ami.play(call.messages, speed=speed)
        self.cdr.write(call.cdr_rows)

    def start_call(self, path: Source, speed: float) -> ChaosCall:
        call = self.new_call(path)
        task = asyncio.create_task(self.play(call, speed))
        self.playing.add(task)
        task.add_done_callback(self.playing.discard)
        return call

    async def quiet(self) -> None:
        """Until no call is in progress on the PBX."""
        while self.playing:
            await asyncio.gather(*list(self.playing))

    def agent_on_ami(self) -> bool:
        return any(session.authenticated for session in self.ami.sessions)

    async def agent_ready(self, timeout: float = 120.0) -> None:
        if not await until(lambda: self.agent_on_ami() and self.proxy.connections > 0, timeout, interval=0.2):
            raise RuntimeError(f"the agent did not come back to AMI and the cloud within {timeout:.0f} s")

    def crm_states(self) -> dict[str, str]:
        """Call id → its CRM status (blocking: DynamoDB reads)."""
        return {call_id: state for call_id, (state, _) in self.crm_items().items()}

    def crm_items(self) -> dict[str, tuple[str, int]]:
        """Call id → (CRM status, Bitrix24 requests made for it)."""
        stack = self.stack
        agents = {c.call_id: c.agent_id for c in list_calls(stack.rt, stack.tenant)}
        items = {}
        for call in self.calls:
            if call.call_id in agents:
                item = crm_status(stack.rt, stack.tenant, agents[call.call_id], call.call_id) or {}
                progress = item.get("progress")
                requests = int(progress.requests) if progress is not None else 0
                items[call.call_id] = (str(item.get("crm_status", "new")), requests)
        return items

    async def settle(self, timeout: float, started: float) -> bool:
        """Until every call is done in the CRM, saying how far it got every 15 s."""
        deadline = time.monotonic() + timeout
        said = time.monotonic()
        while True:
            states = await asyncio.to_thread(self.crm_states)
            done = sum(1 for c in self.calls if states.get(c.call_id) in ("done", "skipped") and self.recorded(c))
            if done == len(self.calls):
                return True
            if time.monotonic() > deadline:
                return False
            if time.monotonic() - said >= 15:
                said = time.monotonic()
                other = {s for s in states.values() if s not in ("done", "skipped")}
                if any(states.get(c.call_id) == "done" and not self.recorded(c) for c in self.calls):
                    other.add("recording to attach")
                self.say(
                    f"[{time.monotonic() - started:6.0f} s] in the CRM: {done}/{len(self.calls)} done; "
                    f"{len(self.calls) - done} to go ({', '.join(sorted(other)) or 'not in the cloud yet'})"
                )
            await asyncio.sleep(2)

    def recorded(self, call: ChaosCall) -> bool:
        """Has a live call's recording reached its last leg? (The CRM is done with a call before the agent's
        upload ends: the recording is attached after the finish.) Calls from the CDR: not waited for."""
        if call.path != "ami" or not call.recording:
            return True
        legs = self.stack.registrations(call.call_id)
        return bool(legs) and legs[-1].record is not None

    def judge(self) -> Verdict:
        legs: dict[str, list[Call]] = {c.call_id: self.stack.registrations(c.call_id) for c in self.calls}
        return judge(self.calls, legs, self.stack.portal.audit())

    def outbox_depth(self) -> int:
        with contextlib.closing(sqlite3.connect(outbox_path(self.data_dir))) as db:
            return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


@contextlib.asynccontextmanager
async def rig(say: Say, workdir: Path, *, cdr_late_seconds: float = 5.0) -> AsyncIterator[Rig]:
    user = UserSpec(AMI_SECRET, read="system,call,agent,dialplan", write="system,originate")
    async with (
        portal_stack(table_prefix="chaos-", concurrent_messages=True) as stack,
        FakeAmiServer({AMI_USER: user}) as ami,
    ):
        gateway = urlsplit(stack.cloud.ws_url)
        proxy = CuttableProxy(gateway.hostname or "127.0.0.1", gateway.port or 80)
        await proxy.start()
        cdr = CdrDatabase(workdir / "master.db")
        data_dir, recordings = workdir / "agent", workdir / "rootfs"
        environ = {
            "EDGE_AMI_HOST": "127.0.0.1",
            "EDGE_AMI_PORT": str(ami.port),
            "EDGE_AMI_USER": AMI_USER,
            "EDGE_AMI_SECRET": AMI_SECRET,
            "EDGE_CLOUD_URL": f"ws://127.0.0.1:{proxy.port}{gateway.path}",
            "EDGE_TOKEN": await stack.agent_token("chaos"),
            "EDGE_DATA_DIR": str(data_dir),
            "EDGE_CDR_DSN": cdr.dsn,
            "EDGE_CDR_TIMEZONE": "UTC",
            "EDGE_CDR_LATE_SECONDS": str(cdr_late_seconds),
            "EDGE_RECORDINGS_ROOT": str(recordings),
            "EDGE_RECORDINGS_STABLE_SECONDS": "0.5",
            "EDGE_RECORDINGS_MISSING_AFTER": "20",
        }
        agent = AgentProcess(environ, workdir / "agent.log")
        say(f"agent log: {agent.log_path}")
        the_rig = Rig(stack, ami, cdr, proxy, agent, recordings, data_dir, say, run_id=os.getpid() % 100)
        await agent.start()
        try:
            await the_rig.agent_ready()
            yield the_rig
        finally:
            code = await agent.stop()
            say(f"agent stopped (exit code {code})")
            await proxy.stop()
            cdr.close()


async def _cut_link(rig: Rig, every: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if not stop.is_set():
            rig.proxy.cut()


async def _blind_window(rig: Rig, kind: Blind, plan: ChaosPlan, started: float) -> None:
    """Wait for a quiet PBX, take the agent's sight away, make calls it cannot see, give its sight back."""
    await rig.quiet()
    if kind == "kill":  # the cloud out of reach first, so the kill finds events not sent yet in the outbox
        rig.proxy.accepting = False
        rig.proxy.cut()
        for _ in range(plan.blind_calls):
            rig.start_call("ami", plan.speed)
            await asyncio.sleep(1.0 / plan.calls_per_second)
        await rig.quiet()
    await asyncio.sleep(2.0)  # what AMI sent has reached the agent's outbox
    if kind == "kill":
        await rig.agent.kill()
        rig.say(f"[{time.monotonic() - started:6.0f} s] agent SIGKILLed ({rig.outbox_depth()} event(s) in its outbox)")
    else:
        await rig.ami.go_down()
        rig.say(f"[{time.monotonic() - started:6.0f} s] AMI dropped the agent's session and stays down")
    blind = []
    for _ in range(plan.blind_calls):
        blind.append(rig.start_call("cdr", plan.speed))
        await asyncio.sleep(1.0 / plan.calls_per_second)
    await rig.quiet()
    if kind == "kill":
        await rig.agent.start()
        rig.proxy.accepting = True
    else:
        rig.ami.come_up()
    await rig.agent_ready()
    names = ", ".join(c.scenario for c in blind)
    rig.say(f"[{time.monotonic() - started:6.0f} s] agent back on AMI; {len(blind)} call(s) made meanwhile ({names})")


async def run_chaos(plan: ChaosPlan, say: Say = print, workdir: Path | None = None) -> ChaosResult:
    with contextlib.ExitStack() as cleanup:
        work = workdir or Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        return await _run_chaos(plan, say, work)


async def _run_chaos(plan: ChaosPlan, say: Say, work: Path) -> ChaosResult:
    load_before = os.getloadavg()
    async with rig(say, work) as the_rig:
        stack = the_rig.stack
        faults = stack.emulator.faults
        faults.query_limit_rate, faults.expire_every, faults.rate_limit = (
            plan.query_limit_rate,
            plan.expire_every,
            plan.rate_limit,
        )
        windows: list[Blind] = _interleave(plan.ami_drops, plan.kills)
        live = plan.calls - plan.blind_calls * (len(windows) + plan.kills)
        if live < 1:
            raise ValueError(f"{plan.calls} calls cannot fill {len(windows)} blind windows of {plan.blind_calls}")
        at = {round((k + 1) * live / (len(windows) + 1)): kind for k, kind in enumerate(windows)}
        outage_at = round(live * 0.35) if plan.outage_seconds > 0 else -1
        say(
            f"chaos: {plan.calls} calls ({plan.calls - plan.blind_calls * len(windows)} live, "
            f"{plan.blind_calls * len(windows)} while the agent is blind), "
            f"{plan.calls_per_second} calls/s; link cut every {plan.cut_every:.0f} s; {plan.kills} SIGKILL(s), "
            f"{plan.ami_drops} AMI drop(s); Bitrix24: {plan.query_limit_rate:.0%} QUERY_LIMIT_EXCEEDED, tokens "
            f"expire every {plan.expire_every} requests, down {plan.outage_seconds:.0f} s once"
        )
        started = time.monotonic()
        stop_cutting = asyncio.Event()
        cutter = asyncio.create_task(_cut_link(the_rig, plan.cut_every, stop_cutting))
        try:
            for index in range(live):
                if index in at:
                    await _blind_window(the_rig, at[index], plan, started)
                if index == outage_at:
                    faults.outage_until = time.time() + plan.outage_seconds
                    say(f"[{time.monotonic() - started:6.0f} s] Bitrix24 down for {plan.outage_seconds:.0f} s")
                the_rig.start_call("ami", plan.speed)
                if index % 25 == 24:
                    say(f"[{time.monotonic() - started:6.0f} s] {len(the_rig.calls)}/{plan.calls} calls started; "
                        f"link cut {the_rig.proxy.cuts} time(s)")  # fmt: skip
                await asyncio.sleep(1.0 / plan.calls_per_second)
            await the_rig.quiet()
            played = time.monotonic() - started
            say(f"[{played:6.0f} s] all {len(the_rig.calls)} calls made; waiting for the CRM")
            settled = await the_rig.settle(plan.settle_timeout, started)
        finally:
            stop_cutting.set()
            await cutter
        took = time.monotonic() - started
        verdict = await asyncio.to_thread(the_rig.judge)
        load_after = os.getloadavg()
        calls = the_rig.calls
        facts: dict[str, object] = {
            "calls made over": f"{played:.0f} s ({len(the_rig.calls) / played * 60:.1f} calls/min)",
            "all in the CRM after": f"{took:.0f} s" if settled else f"NOT within {plan.settle_timeout:.0f} s",
            "websocket cuts": the_rig.proxy.cuts,
            "agent SIGKILLs / starts": f"{the_rig.agent.kills} / {the_rig.agent.starts}",
            "AMI drops": plan.ami_drops,
            "Bitrix24": f"{plan.query_limit_rate:.0%} QUERY_LIMIT_EXCEEDED, tokens expire every "
            f"{plan.expire_every} requests, down {plan.outage_seconds:.0f} s once, leaky bucket "
            f"{'on' if plan.rate_limit else 'off'}",
            "Bitrix24 requests (per call)": _requests(await asyncio.to_thread(the_rig.crm_items), len(calls)),
            "CDR rows written": the_rig.cdr.rows,
            "load average (1 min) before / after": f"{load_before[0]:.2f} / {load_after[0]:.2f}",
            "cores": os.cpu_count(),
        }
        return ChaosResult(verdict, facts)


def _requests(items: dict[str, tuple[str, int]], calls: int) -> str:
    total = sum(requests for _, requests in items.values())
    return f"{total} ({total / max(calls, 1):.1f})"


def _interleave(ami_drops: int, kills: int) -> list[Blind]:
    """AMI drops and kills alternating (drop, kill, drop, …), the longer list's rest at the end."""
    out: list[Blind] = []
    for drop, kill in itertools.zip_longest(range(ami_drops), range(kills)):
        if drop is not None:
            out.append("ami")
        if kill is not None:
            out.append("kill")
    return out


async def run_disconnect(plan: DisconnectPlan, say: Say = print, workdir: Path | None = None) -> ChaosResult:
    with contextlib.ExitStack() as cleanup:
        work = workdir or Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="chaos-away-")))
        return await _run_disconnect(plan, say, work)


async def _run_disconnect(plan: DisconnectPlan, say: Say, work: Path) -> ChaosResult:
    async with rig(say, work) as the_rig:
        started = time.monotonic()
        the_rig.proxy.accepting = False
        the_rig.proxy.cut()
        say(f"cloud unreachable; {plan.live_calls} calls the agent sees and keeps in its outbox")
        for _ in range(plan.live_calls):
            the_rig.start_call("ami", 2.0)
            await asyncio.sleep(0.5)
        await the_rig.quiet()
        await asyncio.sleep(2.0)
        await the_rig.agent.stop()
        waiting = the_rig.outbox_depth()
        say(f"agent stopped with {waiting} event(s) waiting in its outbox")
        # An agent stopped `away_seconds` ago would have left its AMI coverage mark then: put it there.
        now = time.time()
        outbox = Outbox(outbox_path(the_rig.data_dir))
        try:
            since = float(outbox.meta(SINCE_KEY) or now)
            outbox.set_meta(COVERED_KEY, repr(now - plan.away_seconds))
            outbox.set_meta(SINCE_KEY, repr(min(since, now - plan.away_seconds - 60)))
        finally:
            outbox.close()
        spacing = (plan.away_seconds - 120) / max(plan.cdr_calls, 1)
        for i in range(plan.cdr_calls):
            call = the_rig.new_call("cdr", started_at=now - plan.away_seconds + 30 + i * spacing)
            the_rig.cdr.write(call.cdr_rows)
        say(f"{plan.cdr_calls} calls made over the {plan.away_seconds / 60:.0f} min the agent was away (CDR rows)")
        the_rig.proxy.accepting = True
        await the_rig.agent.start()
        await the_rig.agent_ready()
        say("agent started again, the cloud reachable")
        settled = await the_rig.settle(plan.settle_timeout, started)
        took = time.monotonic() - started
        left = the_rig.outbox_depth()
        verdict = await asyncio.to_thread(the_rig.judge)
        facts: dict[str, object] = {
            "events in the outbox when stopped": waiting,
            "events in the outbox at the end": left,
            "away (compressed)": f"{plan.away_seconds / 60:.0f} min of CDR time; {plan.cdr_calls} calls",
            "all in the CRM after": f"{took:.0f} s" if settled else f"NOT within {plan.settle_timeout:.0f} s",
        }
        result = ChaosResult(verdict, facts)
        if left:
            verdict.problems.append(f"{left} event(s) still in the outbox")
        return result
