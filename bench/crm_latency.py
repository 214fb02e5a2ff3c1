"""Ring-to-card latency, Bitrix24 requests per call, and what one portal sustains under its rate limit.

The real path on loopback: the fake AMI server plays recorded real-Asterisk calls (fresh ids per call) over a
real AMI socket to a real ``Agent`` (interpreter, SQLite outbox, websocket), which streams them to
``cloud-local`` (local API Gateway, the Chalice app, moto server as DynamoDB in a process of its own, as DynamoDB
is outside a Lambda's process: ``--moto-in-process`` for the old layout; the CRM pipeline runs in the websocket
handler, the sweeper every 0.3 s), which calls the Bitrix24 emulator over HTTP. Nothing injected, unless
``--b24-latency`` makes the emulator answer the latency runs' requests that late (real portals take 100+ ms).

The local API Gateway hands messages to the handler concurrently, as AWS does (``--sequential``: one at a
time); the license server runs too (the portal is on its trial: every feature, no card limit).

1. **latency**: queue calls (ringall 101+102, answered by 102), started at each of ``--rates`` calls per second
   for ``--seconds`` (each rate drains before the next), each at its recorded pace; ring-to-card = from the fake
   AMI server sending the call's first ``Newstate Ringing`` to the emulator handling the ``show`` that opened its
   first card. The emulator's rate limit is off here (one portal could not take 20 calls/s: see part 3).
2. **requests per call**, per lab scenario, played one at a time at twice their recorded pace.
3. **sustained**: the emulator's leaky bucket on (2 requests/s, burst 50): queue calls offered at
   ``--offer-per-min`` for ``--offer-seconds``; the figure is how many calls per minute reach the CRM, and that
   none is lost (every call finished exactly once, no card left open).

moto server and the emulator share the machine's cores with the agent and the gateway; the figures are for this
local stack. Run: ``python -m bench.crm_latency [--rates 5,20,50] [--seconds 10] [--parts latency,requests,sustained]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.machine import load_average
from edge_agent.ami.framing import AmiMessage
from edge_agent.trace import read_trace
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.cloud_local.stack import AwsMode
from sandbox.portal_stack import PortalStack, portal_stack, until

TRACES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "traces"
#: How often the bench asks DynamoDB whether a run's calls are all done: each question reads every call of the
#: tenant, on the same moto server and the same cores as the path being measured, so not every 0.1 s.
POLL = 1.0
_CHANNEL_SUFFIX = re.compile(r"-([0-9a-f]{8})(?=[;,]|$)")
_BRIDGE_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def fresh_call(name: str, number: int) -> list[AmiMessage]:
    """A recorded call with its Linkedid/Uniqueids, channel names and bridge ids made unique (calls overlap in
    time: calls sharing a bridge id would be one bridge to the agent, hundreds of members wide)."""

    def rewrite(value: str) -> str:
        value = value.replace("pbx-", f"b{number}-")
        value = _BRIDGE_ID.sub(lambda m: f"{m.group(0)[:-8]}{number:08x}", value)
        return _CHANNEL_SUFFIX.sub(lambda m: f"-{number:04x}{m.group(1)[4:]}", value)

    return [{k: rewrite(v) for k, v in m.items()} for m in read_trace(TRACES / f"{name}.jsonl")]


def linkedid(call: list[AmiMessage]) -> str:
    return next(m["Linkedid"] for m in call if m.get("Event") == "Newchannel")


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


@dataclass
class Bench:
    stack: PortalStack
    ami: FakeAmiServer

    def requests_of(self, call_id: str) -> int:
        item = self.stack.crm_item(call_id) or {}
        progress = item.get("progress")
        return int(progress.requests) if progress is not None else 0


async def play_schedule(ami: FakeAmiServer, calls: list[tuple[float, list[AmiMessage]]]) -> dict[str, float]:
    """Send every call's messages at ``start + recorded offset``; returns Linkedid → when its ring was sent."""
    timeline: list[tuple[float, int, AmiMessage]] = []
    for index, (start, messages) in enumerate(calls):
        t0 = float(messages[0]["_ts"])
        for m in messages:
            if "Response" in m or "ActionID" in m:
                continue
            timeline.append((start + float(m.get("_ts", t0)) - t0, index, m))
    timeline.sort(key=lambda item: (item[0], item[1]))
    rang: dict[str, float] = {}
    origin = time.monotonic()
    for offset, _, message in timeline:
        delay = origin + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if message.get("Event") == "Newstate" and message.get("ChannelState") == "5":
            rang.setdefault(message["Linkedid"], time.time())
        await ami.emit(message)
    return rang


async def latency(bench: Bench, rate: float, seconds: float, b24_latency: float = 0.0) -> dict[str, Any]:
    bench.stack.emulator.faults.rate_limit = False
    bench.stack.emulator.faults.latency = b24_latency
    count = int(rate * seconds)
    calls = [(i / rate, fresh_call("inbound_queue_answered", 1000 + i)) for i in range(count)]
    ids = {linkedid(c) for _, c in calls}
    rang = await play_schedule(bench.ami, calls)
    finished = await until(lambda: bench.stack.crm_done(ids), 300, interval=POLL)
    shown = bench.stack.first_card_at()
    ms = [(shown[c] - rang[c]) * 1000 for c in ids if c in shown and c in rang]
    bench.stack.emulator.faults.latency = 0.0
    return {
        "calls": count,
        "calls_per_s": rate,
        "bitrix24_latency_ms": round(b24_latency * 1000),
        "all_in_crm": finished,
        "with_card": len(ms),
        "ring_to_card_ms_p50": round(percentile(ms, 0.50), 1),
        "ring_to_card_ms_p99": round(percentile(ms, 0.99), 1),
        "ring_to_card_ms_max": round(max(ms), 1) if ms else None,
    }


async def requests_per_call(bench: Bench) -> dict[str, int]:
    figures = {}
    for number, path in enumerate(sorted(TRACES.glob("*.jsonl"))):
        name = path.name.removesuffix(".jsonl")
        call = fresh_call(name, 5000 + number)
        await bench.ami.play(call, speed=2.0)
        call_id = linkedid(call)
        await until(lambda call_id=call_id: bench.stack.crm_done({call_id}), 60)  # type: ignore[misc]
        figures[name] = bench.requests_of(call_id)
    return figures


async def sustained(bench: Bench, per_min: float, seconds: float) -> dict[str, Any]:
    bench.stack.emulator.faults.rate_limit = True
    count = int(per_min * seconds / 60)
    calls = [(i * 60 / per_min, fresh_call("inbound_queue_answered", 9000 + i)) for i in range(count)]
    ids = {linkedid(c) for _, c in calls}
    before = len(bench.stack.portal.calls)
    started = time.monotonic()
    await play_schedule(bench.ami, calls)
    offered_for = time.monotonic() - started
    finished = await until(lambda: bench.stack.crm_done(ids), 600, interval=POLL)
    took = time.monotonic() - started
    audit = bench.stack.portal.audit()
    mine = [leg for call_id in ids for leg in bench.stack.registrations(call_id)]
    return {
        "offered_calls": count,
        "offered_per_min": per_min,
        "offered_over_s": round(offered_for, 1),
        "all_in_crm": finished,
        "in_crm_after_s": round(took, 1),
        "calls_per_min_reaching_crm": round(count / took * 60, 1),
        "registrations": len(mine),
        "finished": sum(1 for c in mine if c.finished),
        "open_cards": sum(len(v) for v in audit["open_cards"].values()),
        "unfinished": len(audit["unfinished"]),
        "portal_calls_before": before,
        "requests": sum(bench.requests_of(c) for c in ids),
        "calls_by_requests": dict(sorted(Counter(bench.requests_of(c) for c in ids).items())),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    aws: AwsMode = "moto" if args.moto_in_process else "moto-process"
    async with portal_stack(table_prefix="bench-crm-", concurrent_messages=not args.sequential, aws=aws) as stack:
        user = UserSpec("edge-secret", read="system,call,agent,dialplan", write="system,originate")
        with tempfile.TemporaryDirectory() as data_dir:
            async with FakeAmiServer({"edge": user}) as ami:
                login = AmiLogin("127.0.0.1", ami.port, "edge", "edge-secret")
                async with running_agent(login, stack.cloud.ws_url, await stack.agent_token("bench"), data_dir):
                    bench = Bench(stack, ami)
                    warm_up = fresh_call("inbound_direct_answered", 1)  # the first user map, warm imports
                    await ami.play(warm_up)
                    await until(lambda: stack.crm_done({linkedid(warm_up)}), 60)
                    result: dict[str, Any] = {}
                    if "latency" in args.parts:
                        result["latency"] = [
                            await latency(bench, rate, args.seconds, args.b24_latency) for rate in args.rates
                        ]
                    if "requests" in args.parts:
                        result["requests_per_call"] = await requests_per_call(bench)
                    if "sustained" in args.parts:
                        result["sustained_2rps"] = await sustained(bench, args.offer_per_min, args.offer_seconds)
                    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crm_latency", description=__doc__)
    parser.add_argument(
        "--rates", type=_floats, default=[5.0, 20.0, 50.0], help="new calls per second, one latency run each"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="how long calls are started at each rate")
    parser.add_argument("--parts", type=lambda text: set(text.split(",")), default={"latency", "requests", "sustained"})
    parser.add_argument("--offer-per-min", type=float, default=45.0, help="calls per minute offered (rate limited)")
    parser.add_argument("--offer-seconds", type=float, default=60.0)
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="the local API Gateway handles one message at a time (AWS invokes the handler concurrently)",
    )
    parser.add_argument(
        "--b24-latency",
        type=float,
        default=0.0,
        help="seconds the emulator waits before answering each request in the latency runs (default 0: none)",
    )
    parser.add_argument(
        "--moto-in-process",
        action="store_true",
        help="moto server inside the stack's process (default: a process of its own: DynamoDB is not in a Lambda's)",
    )
    args = parser.parse_args(argv)
    load_before = load_average()
    started = time.perf_counter()
    result = asyncio.run(run(args))
    result["bench_seconds"] = round(time.perf_counter() - started, 1)
    result["load_average_before_after"] = [load_before, load_average()]
    print(json.dumps(result, indent=2))
    for run_ in result.get("latency", []):
        met = run_["ring_to_card_ms_p50"] <= 25 and run_["ring_to_card_ms_p99"] <= 100
        verdict = (
            f" (target p50 <= 25 ms, p99 <= 100 ms: {'met' if met else 'MISSED'})" if run_["calls_per_s"] == 20 else ""
        )
        injected = f" (Bitrix24 answering in {run_['bitrix24_latency_ms']} ms)" if run_["bitrix24_latency_ms"] else ""
        print(
            f"ring-to-card at {run_['calls_per_s']:g} calls/s{injected}: p50 {run_['ring_to_card_ms_p50']} ms, "
            f"p99 {run_['ring_to_card_ms_p99']} ms{verdict if not injected else ''}"
        )
    if "requests_per_call" in result:
        queue = result["requests_per_call"].get("inbound_queue_answered")
        print(f"requests for an inbound call answered after ringing two users: {queue} (target <= 3)")
    if "sustained_2rps" in result:
        print(f"one portal at 2 requests/s: {result['sustained_2rps']['calls_per_min_reaching_crm']} calls/min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
