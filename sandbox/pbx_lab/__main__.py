"""`python -m sandbox.pbx_lab up|down|status|build` (`make lab` / `make lab-down`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from sandbox.pbx_lab.build import LabUnavailable
from sandbox.pbx_lab.lab import Lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.pbx_lab", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "build", "rebuild", "scenario"))
    parser.add_argument("names", nargs="*", help="scenario names (for `scenario`; none = all)")
    args = parser.parse_args(argv)
    lab = Lab()
    try:
        if args.command == "up":
            lab.up()
        elif args.command == "down":
            lab.down()
        elif args.command == "scenario":
            from sandbox.pbx_lab.scenarios import run

            results = asyncio.run(run(list(args.names)))
            print(json.dumps(results, indent=2))
        elif args.command in ("build", "rebuild"):
            lab.build(force=args.command == "rebuild")
        else:
            print(f"lab dir: {lab.paths.base} (rootfs {'built' if lab.built else 'not built'})")
            for st in lab.status():
                state = f"running pid {st.pid}" if st.running else "stopped"
                ami = f"AMI 127.0.0.1:{st.ami_port} {'ok' if st.ami_ok else 'down'}"
                print(f"{st.name:6s} {state:18s} {ami:24s} {st.detail}")
    except LabUnavailable as exc:
        print(f"pbx lab unavailable: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
