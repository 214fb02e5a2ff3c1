"""How many call events one agent delivers to the cloud per second, and how long each waits for its ack.

The real path on loopback: the fake AMI server plays the recorded real-Asterisk traces (with fresh ids each
round) to a real ``Agent`` (interpreter, SQLite outbox with fsync on every commit, websocket link), which
streams them to ``cloud-local`` (the Chalice app behind the local API Gateway, moto server as DynamoDB, each
event stored in a DynamoDB transaction before the ack). Two runs:

- **saturated**: every round played as fast as the AMI socket takes it; figures: events/s delivered and
  stored, and ack latency under that load;
- **paced**: calls arrive at a steady rate well under capacity; figure: ack latency as an agent normally sees it.

Ack latency = from the event's commit to the outbox to the cloud's ack that covers it. moto is much slower
than DynamoDB, so these are figures for the local stack, a floor for AWS, not a prediction of it.

Run: ``python -m bench.link_throughput [--rounds 20] [--paced-calls-per-s 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_agent.ami.framing import AmiMessage
from edge_agent.outbox import Outbox
from edge_agent.trace import read_trace
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.cloud_local import CloudLocal, CloudLocalConfig
from sandbox.cloud_local.agents import AmiLogin, issue_token, running_agent
from wire_protocol.call_events import CallEvent
from wire_protocol.messages import SequencedEvent

TRACES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "traces"


class AckClock:
    """Times each outbox seq from commit to ack, by wrapping the outbox (benchmark instrumentation only)."""

    def __init__(self) -> None:
        self.appended: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        self.highest_acked = 0

    def install(self) -> Callable[[], None]:
        original_append, original_ack = Outbox.append, Outbox.ack
        clock = self

        def append(outbox: Outbox, events: Sequence[CallEvent]) -> list[SequencedEvent]:
            stored = original_append(outbox, events)
            now = time.perf_counter()
            for event in stored:
                clock.appended[event.seq] = now
            return stored

        def ack(outbox: Outbox, up_to_seq: int) -> int:
            now = time.perf_counter()
            for seq in range(clock.highest_acked + 1, up_to_seq + 1):
                clock.acked.setdefault(seq, now)
            clock.highest_acked = max(clock.highest_acked, up_to_seq)
            return original_ack(outbox, up_to_seq)

        # the Agent builds its own Outbox: wrap the class for the run (benchmark instrumentation only)
        setattr(Outbox, "append", append)  # noqa: B010
        setattr(Outbox, "ack", ack)  # noqa: B010

        def uninstall() -> None:
            setattr(Outbox, "append", original_append)  # noqa: B010
            setattr(Outbox, "ack", original_ack)  # noqa: B010

        return uninstall

    def latencies_ms(self, seqs: range) -> list[float]:
        return [(self.acked[s] - self.appended[s]) * 1000 for s in seqs if s in self.acked and s in self.appended]


def calls_of(round_number: int) -> list[list[AmiMessage]]:
    """Each recorded call with its ids made unique for this round (the cloud dedupes on call id)."""
    prefix = f"r{round_number}-"
    return [
        [{key: value.replace("pbx-", prefix) for key, value in message.items()} for message in read_trace(path)]
        for path in sorted(TRACES.glob("*.jsonl"))
    ]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


async def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def measure(rounds: int, paced_calls_per_s: float, paced_rounds: int) -> dict[str, Any]:
    clock = AckClock()
    uninstall = clock.install()
    user = UserSpec("edge-secret", read="system,call,agent,dialplan", write="system,originate")
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            async with (
                CloudLocal(CloudLocalConfig(table_prefix="bench-")) as cloud,
                FakeAmiServer({"edge": user}) as ami,
            ):
                _, token = await issue_token("benchportal", "bench")
                login = AmiLogin("127.0.0.1", ami.port, "edge", "edge-secret")
                async with running_agent(login, cloud.ws_url, token, data_dir):
                    # saturated
                    start = time.perf_counter()
                    for number in range(rounds):
                        for call in calls_of(number):
                            await ami.play(call)
                    await wait_for(lambda: bool(clock.appended) and clock.highest_acked >= max(clock.appended), 600)
                    saturated_seconds = time.perf_counter() - start
                    saturated_events = len(clock.appended)
                    saturated = clock.latencies_ms(range(1, saturated_events + 1))

                    # paced
                    first_paced = saturated_events + 1
                    for number in range(rounds, rounds + paced_rounds):
                        for call in calls_of(number):
                            await ami.play(call)
                            await asyncio.sleep(1 / paced_calls_per_s)
                    await wait_for(lambda: clock.highest_acked >= max(clock.appended), 120)
                    paced = clock.latencies_ms(range(first_paced, max(clock.appended) + 1))
    finally:
        uninstall()
    return {
        "saturated_call_events": saturated_events,
        "saturated_events_per_s": round(saturated_events / saturated_seconds, 1),
        "saturated_ack_ms_p50": round(percentile(saturated, 0.50), 1),
        "saturated_ack_ms_p99": round(percentile(saturated, 0.99), 1),
        "paced_calls_per_s": paced_calls_per_s,
        "paced_call_events": len(paced),
        "paced_ack_ms_p50": round(percentile(paced, 0.50), 1),
        "paced_ack_ms_p99": round(percentile(paced, 0.99), 1),
        "paced_ack_ms_mean": round(statistics.fmean(paced), 1) if paced else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the 19 recorded calls, saturated")
    parser.add_argument("--paced-rounds", type=int, default=2, help="rounds played at the paced rate")
    parser.add_argument("--paced-calls-per-s", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.rounds, args.paced_calls_per_s, args.paced_rounds))
    print("one agent -> cloud-local (moto as DynamoDB), outbox fsync on, loopback")
    print(
        f"  saturated: {figures['saturated_call_events']} call events, "
        f"{figures['saturated_events_per_s']} events/s stored and acked; "
        f"ack latency p50 {figures['saturated_ack_ms_p50']} ms, p99 {figures['saturated_ack_ms_p99']} ms"
    )
    print(
        f"  paced at {figures['paced_calls_per_s']} calls/s: {figures['paced_call_events']} call events; "
        f"ack latency p50 {figures['paced_ack_ms_p50']} ms, p99 {figures['paced_ack_ms_p99']} ms"
    )
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
