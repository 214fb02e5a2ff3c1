"""``python -m sandbox.chaos`` (``make chaos``): the fault suite's full run, then the hour-away run; prints the
result tables and exits 1 when a call is missing, wrong or duplicated."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from sandbox.chaos.run import ChaosPlan, DisconnectPlan, run_chaos, run_disconnect


def main(argv: list[str] | None = None) -> int:
    defaults = ChaosPlan()
    parser = argparse.ArgumentParser(prog="python -m sandbox.chaos", description=__doc__)
    parser.add_argument("--mode", choices=("faults", "away", "both"), default="both")
    parser.add_argument("--calls", type=int, default=defaults.calls)
    parser.add_argument("--rate", type=float, default=defaults.calls_per_second, help="new calls per second")
    parser.add_argument("--cut-every", type=float, default=defaults.cut_every, help="websocket cut period (s)")
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--ami-drops", type=int, default=defaults.ami_drops)
    parser.add_argument("--outage", type=float, default=defaults.outage_seconds, help="Bitrix24 down once (s)")
    parser.add_argument(
        "--rate-limit", action="store_true", help="the portal's leaky bucket on (2 requests/s; lower --rate to ~0.3)"
    )
    parser.add_argument("--away-calls", type=int, default=DisconnectPlan().cdr_calls)
    parser.add_argument("--workdir", type=Path, help="keep the agent's log, outbox and CDR here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    ok = True
    if args.mode in ("faults", "both"):
        plan = ChaosPlan(
            calls=args.calls,
            calls_per_second=args.rate,
            cut_every=args.cut_every,
            kills=args.kills,
            ami_drops=args.ami_drops,
            outage_seconds=args.outage,
            rate_limit=args.rate_limit,
        )
        work = args.workdir / "faults" if args.workdir else None
        if work:
            work.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run_chaos(plan, lambda line: print(line, flush=True), work))
        print("\n## Fault suite: everything at once\n")
        print(result.table(), flush=True)
        ok = ok and result.passed
    if args.mode in ("away", "both"):
        work = args.workdir / "away" if args.workdir else None
        if work:
            work.mkdir(parents=True, exist_ok=True)
        away = asyncio.run(run_disconnect(DisconnectPlan(cdr_calls=args.away_calls), print, work))
        print("\n## Fault suite: an hour away (compressed)\n")
        print(away.table(), flush=True)
        ok = ok and away.passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
