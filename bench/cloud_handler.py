"""The cloud's cost per message: time inside the websocket handler per message and per event, and its DynamoDB
round trips (the cold start is :mod:`bench.cold_start`).

1. **handler**: the real path of :mod:`bench.crm_latency` (recorded queue calls over AMI → a real agent →
   cloud-local → the Bitrix24 emulator) at ``--rate`` new calls per second, with the ``$default`` handler timed in
   process: the whole invocation (:func:`cloud.link.dispatch.on_message`), its store-and-ack part
   (``handle_agent_message``) and its CRM passes (``process_call``, one thread per call, summed), and the DynamoDB
   requests each makes (counted per invocation on botocore's client, in the handler's and the passes' threads).
   moto server answers DynamoDB on loopback in this process, so a round trip costs more than DynamoDB's few
   milliseconds would; the counts carry over to AWS.
Run: ``python -m bench.cloud_handler [--rate 5] [--seconds 6]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.client import BaseClient  # type: ignore[import-untyped]

from bench.crm_latency import fresh_call, linkedid, percentile
from bench.machine import load_average
from cloud.link import dispatch
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.cloud_local.agents import AmiLogin, running_agent
from sandbox.portal_stack import portal_stack, until


def events_in(body: Any) -> int:
    """How many call events a ``$default`` body carries (0 for other messages)."""
    try:
        message = json.loads(body)
    except (TypeError, ValueError):
        return 0
    return len(message.get("events") or []) if isinstance(message, dict) else 0


@dataclass
class Invocation:
    """One ``$default`` invocation: seconds spent and DynamoDB requests made, per part."""

    events: int = 0
    total: float = 0.0
    cpu: float = 0.0  # the handler thread's own CPU time (moto server's work for it runs in other threads)
    store: float = 0.0
    crm: float = 0.0
    store_requests: int = 0
    crm_requests: int = 0
    operations: Counter[str] = field(default_factory=Counter)  # "store:GetItem", "crm:UpdateItem", ...


@dataclass
class HandlerClock:
    invocations: list[Invocation] = field(default_factory=list)
    local: threading.local = field(default_factory=threading.local)

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Wrap the handler's three functions and botocore's request path for the duration (benchmark only)."""
        clock = self
        on_message, handle = dispatch.on_message, dispatch.handle_agent_message
        process = getattr(dispatch, "process_call")  # noqa: B009 - imported there, not exported
        pool = getattr(dispatch, "ThreadPoolExecutor")  # noqa: B009 - imported there, not exported
        make_api_call = BaseClient._make_api_call
        counting = threading.Lock()

        class PassThreads(pool):  # type: ignore[misc,valid-type]
            """The CRM passes' threads count for the invocation that started them."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.invocation = getattr(clock.local, "current", None)

            def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
                invocation = self.invocation

                def in_pass_thread() -> Any:
                    clock.local.current, clock.local.part = invocation, "crm"
                    try:
                        return fn(*args, **kwargs)
                    finally:
                        clock.local.current = clock.local.part = None

                return super().submit(in_pass_thread)

        def timed_on_message(rt: Any, event: Any) -> Any:
            call = clock.local.current = Invocation()
            call.events = events_in(event.get("body"))
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return on_message(rt, event)
            finally:
                call.total = time.perf_counter() - started
                call.cpu = time.thread_time() - cpu
                clock.local.current = None
                clock.invocations.append(call)

        def timed_handle(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return handle(*args)
            finally:
                if (call := getattr(clock.local, "current", None)) is not None:
                    call.store += time.perf_counter() - started

        def timed_process(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return process(*args, **kwargs)
            finally:
                if (call := getattr(clock.local, "current", None)) is not None:
                    with counting:
                        call.crm += time.perf_counter() - started

        def counted(client: Any, operation: str, params: Any) -> Any:
            if (
                call := getattr(clock.local, "current", None)
            ) is not None and client.meta.service_model.service_name == ("dynamodb"):
                part = getattr(clock.local, "part", None) or "store"  # the handler thread: store and ack
                with counting:
                    if part == "store":
                        call.store_requests += 1
                    else:
                        call.crm_requests += 1
                    call.operations[f"{part}:{operation}"] += 1
            return make_api_call(client, operation, params)

        patches: list[tuple[Any, str, Any]] = [
            (dispatch, "on_message", timed_on_message),
            (dispatch, "handle_agent_message", timed_handle),
            (dispatch, "process_call", timed_process),
            (dispatch, "ThreadPoolExecutor", PassThreads),
            (BaseClient, "_make_api_call", counted),
        ]
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
        for owner, name, value in patches:
            setattr(owner, name, value)
        try:
            yield
        finally:
            for owner, name, value in saved:
                setattr(owner, name, value)


def _ms(values: list[float], fraction: float) -> float:
    return round(percentile(values, fraction) * 1000, 1)


async def handler_figures(rate: float, seconds: float) -> dict[str, Any]:
    clock = HandlerClock()
    async with portal_stack(table_prefix="bench-handler-", concurrent_messages=True) as stack:
        stack.emulator.faults.rate_limit = False  # one portal's 2 requests/s is crm_latency's part 3
        user = UserSpec("edge-secret", read="system,call,agent,dialplan", write="system,originate")
        with tempfile.TemporaryDirectory() as data_dir:
            async with FakeAmiServer({"edge": user}) as ami:
                login = AmiLogin("127.0.0.1", ami.port, "edge", "edge-secret")
                async with running_agent(login, stack.cloud.ws_url, await stack.agent_token("bench"), data_dir):
                    warm_up = fresh_call("inbound_direct_answered", 1)
                    await ami.play(warm_up)
                    await until(lambda: stack.crm_done({linkedid(warm_up)}), 60)
                    with clock.installed():
                        count = max(1, int(rate * seconds))
                        calls = [fresh_call("inbound_queue_answered", 2000 + i) for i in range(count)]
                        started = time.monotonic()
                        plays = []
                        for index, call in enumerate(calls):
                            plays.append(asyncio.ensure_future(ami.play(call, speed=1.0)))  # at its recorded pace
                            await asyncio.sleep(max(0.0, (index + 1) / rate - (time.monotonic() - started)))
                        await asyncio.gather(*plays)
                        ids = {linkedid(call) for call in calls}
                        done = await until(lambda: stack.crm_done(ids), 300, interval=1.0)
    batches = [call for call in clock.invocations if call.events]
    events = sum(call.events for call in batches)
    return {
        "calls": count,
        "calls_per_s": rate,
        "all_in_crm": done,
        "event_messages": len(batches),
        "events": events,
        "events_per_message": round(events / len(batches), 2) if batches else None,
        "handler_ms_per_event": round(sum(c.total for c in batches) / events * 1000, 1) if events else None,
        "handler_cpu_ms_per_event": round(sum(c.cpu for c in batches) / events * 1000, 1) if events else None,
        "handler_ms_p50": _ms([c.total for c in batches], 0.5),
        "handler_ms_p99": _ms([c.total for c in batches], 0.99),
        "store_ack_ms_p50": _ms([c.store for c in batches], 0.5),
        "store_ack_ms_p99": _ms([c.store for c in batches], 0.99),
        "crm_pass_ms_p50": _ms([c.crm for c in batches if c.crm], 0.5),
        "crm_pass_ms_p99": _ms([c.crm for c in batches if c.crm], 0.99),
        "dynamodb_requests_per_message_store_ack": round(statistics.fmean(c.store_requests for c in batches), 2)
        if batches
        else None,
        "dynamodb_requests_per_crm_pass": round(statistics.fmean(c.crm_requests for c in batches if c.crm), 2)
        if any(c.crm for c in batches)
        else None,
        "dynamodb_requests_per_message_by_operation": {
            name: round(count / len(batches), 2)
            for name, count in sorted(sum((c.operations for c in batches), Counter[str]()).items())
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cloud_handler", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rate", type=float, default=5.0, help="new calls per second (handler run)")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long calls are started")
    args = parser.parse_args(argv)
    before = load_average()
    h = asyncio.run(handler_figures(args.rate, args.seconds))
    h["load_average_before_after"] = [before, load_average()]
    print(json.dumps(h, indent=2))
    print(
        f"$default handler at {h['calls_per_s']:g} calls/s: {h['handler_ms_per_event']} ms per event "
        f"({h['handler_cpu_ms_per_event']} ms of it the handler thread's CPU), "
        f"{h['handler_ms_p50']} ms per message p50 ({h['events_per_message']} events/message); "
        f"DynamoDB requests: {h['dynamodb_requests_per_message_store_ack']} per message to store and ack, "
        f"{h['dynamodb_requests_per_crm_pass']} per CRM pass; load {h['load_average_before_after'][0]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
