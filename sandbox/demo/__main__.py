"""The demo: real calls recorded on the Asterisk 22 lab, replayed through the edge agent's interpreter.

Each trace is the raw AMI stream of one lab scenario, exactly as Asterisk sent it; the interpreter turns it
into the call events the agent sends to the cloud. ``--once`` exits non-zero if any call's summary differs
from the one the scenario expected.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.trace import read_trace
from sandbox.call_expectations import mismatches
from sandbox.demo.narrate import describe, summary_table
from wire_protocol.call_events import CallEnded, CallSummary

TRACES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "traces"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="check every outcome and exit (0 = all as expected)")
    parser.add_argument("--traces", type=Path, default=TRACES)
    args = parser.parse_args(argv)

    paths = sorted(args.traces.glob("*.jsonl"))
    if not paths:
        print(f"no recorded traces in {args.traces}", file=sys.stderr)
        return 1
    print(f"Replaying {len(paths)} calls recorded on a real Asterisk 22 through the edge agent's interpreter.\n")
    finished: list[tuple[str, CallSummary]] = []
    problems: list[str] = []
    for path in paths:
        name = path.name.removesuffix(".jsonl")
        print(f"== {name}")
        interpreter = CallInterpreter()
        summaries: list[CallSummary] = []
        for message in read_trace(path):
            for event in interpreter.feed(message):
                print("   " + describe(event))
                if isinstance(event, CallEnded):
                    summaries.append(event.summary)
                    finished.append((name, event.summary))
        expected_path = path.with_suffix(".expected.json")
        if expected_path.exists():
            expected = json.loads(expected_path.read_text(encoding="utf-8"))
            problems += [f"{name}: {p}" for p in mismatches(expected, [s.to_json_dict() for s in summaries])]
        print()
    print(summary_table(finished))
    if problems:
        print("\nOutcomes that differ from what the scenario expected:", file=sys.stderr)
        for line in problems:
            print("  " + line, file=sys.stderr)
        return 1
    print(f"\nAll {len(finished)} calls interpreted as expected.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
