"""The edge agent's CPU and memory with hundreds of calls in progress, measured on the agent's own process.

``edge-agent run`` runs as a separate process (what a customer runs), logged in to the fake AMI server and linked
to :class:`sandbox.fake_cloud.FakeCloud` (a protocol-speaking cloud that stores and acks at once: the agent is
never held back by the cloud, so it sends as many messages as it can: the costly case for it). The fake AMI plays
the recorded real-Asterisk queue call (ringall 101+102, answered by 102) with fresh ids, cut at the moment the
agent hangs up: each call rings, is answered and then stays up, talking.

1. **ramp**: ``--calls`` calls started at ``--ramp-rate`` per second until all are in progress;
2. **window**: for ``--window`` seconds the calls stay up while the PBX turns over ``--churn`` calls per second
   (the oldest hangs up, a new one rings: 500 calls of about 3 minutes each turn over ~3 per second).

Figures: the agent's CPU as % of one core (its process CPU time, user + system, over the window, from
``/proc``), its peak resident memory (``VmHWM``) and memory at the end, and that every event was delivered.

Run: ``python -m bench.agent_load [--calls 500] [--window 20] [--churn 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from bench.crm_latency import fresh_call
from bench.machine import load_average
from edge_agent.ami.framing import AmiMessage
from sandbox.ami_server import FakeAmiServer, UserSpec
from sandbox.fake_cloud import FakeCloud

AGENT_ID, TOKEN = "agent-1", "bench-agent-token"
TICKS = os.sysconf("SC_CLK_TCK")


def split_call(number: int) -> tuple[list[AmiMessage], list[AmiMessage]]:
    """A fresh queue call cut where the answering phone hangs up: (ring and talk, the hangup)."""
    messages = [m for m in fresh_call("inbound_queue_answered", number) if "Response" not in m]
    cut = next(i for i, m in enumerate(messages) if m.get("Event") == "HangupRequest")
    return messages[:cut], messages[cut:]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of stat)


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory now (``VmRSS``) and its peak (``VmHWM``), MB (10⁶ bytes, as the target is stated)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = round(int(rest.split()[0]) * 1024 / 1e6, 1)
    return values


def agent_command() -> list[str]:
    """``edge-agent`` as installed next to this interpreter (the console script a customer runs)."""
    script = Path(sys.executable).with_name("edge-agent")
    return (
        [str(script), "run"] if script.exists() else [sys.executable, "-c", "from edge_agent.cli import main; main()"]
    )


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def measure(calls: int, ramp_rate: float, window: float, churn: float) -> dict[str, Any]:
    user = UserSpec("edge-secret", read="system,call,agent,dialplan", write="system,originate")
    async with FakeAmiServer({"edge": user}) as ami, FakeCloud({TOKEN: AGENT_ID}) as cloud:
        with tempfile.TemporaryDirectory() as data_dir:
            env = os.environ | {
                "EDGE_AMI_HOST": "127.0.0.1",
                "EDGE_AMI_PORT": str(ami.port),
                "EDGE_AMI_USER": "edge",
                "EDGE_AMI_SECRET": "edge-secret",
                "EDGE_CLOUD_URL": cloud.url,
                "EDGE_TOKEN": TOKEN,
                "EDGE_DATA_DIR": data_dir,
            }
            log_path = Path(data_dir) / "agent.log"
            with log_path.open("wb") as log_file:
                process = await asyncio.create_subprocess_exec(
                    *agent_command(), env=env, stdout=subprocess.DEVNULL, stderr=log_file
                )
            try:
                await wait_for(lambda: ami.connections > 0 and bool(cloud.hellos), 30, "the agent to connect")
                await asyncio.sleep(1.0)  # its AMI filters and first actions
                started_at_rest = memory_mb(process.pid)
                up: deque[list[AmiMessage]] = deque()
                plays: set[asyncio.Task[int]] = set()
                number = 0

                def start_call() -> None:
                    nonlocal number
                    number += 1
                    ring_and_talk, hangup = split_call(10_000 + number)
                    up.append(hangup)
                    task = asyncio.ensure_future(ami.play(ring_and_talk, speed=1.0))
                    plays.add(task)
                    task.add_done_callback(plays.discard)

                ramp_cpu = cpu_seconds(process.pid)
                ramp_started = time.monotonic()
                for i in range(calls):
                    await asyncio.sleep(max(0.0, ramp_started + i / ramp_rate - time.monotonic()))
                    start_call()
                await wait_for(lambda: not plays, 60, "the ramp's calls to be answered")
                await asyncio.sleep(2.0)
                ramp = {
                    "seconds": round(time.monotonic() - ramp_started, 1),
                    "cpu_percent": round(
                        100 * (cpu_seconds(process.pid) - ramp_cpu) / (time.monotonic() - ramp_started), 1
                    ),
                }
                load_at_window = load_average()
                window_cpu, window_started = cpu_seconds(process.pid), time.monotonic()
                turned_over = 0
                while time.monotonic() - window_started < window:
                    await asyncio.sleep(
                        max(0.0, window_started + turned_over / churn - time.monotonic()) if churn else 0.5
                    )
                    if churn and time.monotonic() - window_started < window:
                        hangup = up.popleft()
                        task = asyncio.ensure_future(ami.play(hangup, speed=1.0))
                        plays.add(task)
                        task.add_done_callback(plays.discard)
                        start_call()
                        turned_over += 1
                elapsed = time.monotonic() - window_started
                window_figures = {
                    "seconds": round(elapsed, 1),
                    "calls_in_progress": len(up),
                    "calls_turned_over": turned_over,
                    "cpu_percent_of_one_core": round(100 * (cpu_seconds(process.pid) - window_cpu) / elapsed, 2),
                    "load_average": load_at_window,
                }
                memory = memory_mb(process.pid)
                await wait_for(lambda: not plays, 60, "the window's calls to be played")
                events = len(cloud.events)
                await wait_for(lambda: cloud.acked_seq(AGENT_ID) >= events, 60, "the agent's events to be acked")
            finally:
                crashed = process.returncode is not None  # it stopped before we stopped it
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            if crashed:
                log_tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"edge-agent exited {process.returncode}: {log_tail}")
    return {
        "calls": calls,
        "ramp": ramp,
        "window": window_figures,
        "rss_mb_at_rest": started_at_rest.get("VmRSS"),
        "rss_mb_end_of_window": memory.get("VmRSS"),
        "rss_mb_peak": memory.get("VmHWM"),
        "events_delivered": events,
        "batches": cloud.batches,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_load", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="calls in progress")
    parser.add_argument("--ramp-rate", type=float, default=50.0, help="new calls per second until they are all up")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured with every call up")
    parser.add_argument("--churn", type=float, default=3.0, help="calls per second ending and starting meanwhile")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.calls, args.ramp_rate, args.window, args.churn))
    print(json.dumps(figures, indent=2))
    cpu, peak = figures["window"]["cpu_percent_of_one_core"], figures["rss_mb_peak"]
    met = cpu <= 10 and peak <= 60
    print(
        f"edge-agent with {figures['window']['calls_in_progress']} calls in progress: {cpu} % of one core, "
        f"peak RSS {peak} MB (targets <= 10 %, <= 60 MB: {'met' if met else 'MISSED'}); "
        f"load {figures['window']['load_average']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
