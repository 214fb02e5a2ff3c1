"""Serve a recorded trace over a real AMI socket: ``python -m sandbox.ami_server --trace FILE``.

For demos and manual runs of the edge agent against a "PBX" without Asterisk. Playback starts when the
first client has logged in (events sent to nobody would be lost, as with a real PBX); ``--loop`` replays the
trace forever (the same Uniqueids come round again, which a client deduplicating by id will notice).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from edge_agent.ami.framing import AmiMessage
from edge_agent.errors import TraceError
from edge_agent.trace import read_trace
from sandbox.ami_server.server import FakeAmiServer, UserSpec

log = logging.getLogger("sandbox.ami_server")

_LOOP_PAUSE = 1.0


def _user(value: str) -> tuple[str, UserSpec]:
    name, sep, secret = value.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:SECRET, got {value!r}")
    return name, UserSpec(secret)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.ami_server", description="Serve a recorded AMI trace over a real AMI socket."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5038)
    parser.add_argument("--user", type=_user, action="append", default=[], help="NAME:SECRET (all classes); repeatable")
    parser.add_argument("--trace", help="JSON Lines trace to play (edge_agent.trace format)")
    parser.add_argument("--speed", type=float, help="keep recorded gaps, divided by N (default: no gaps)")
    parser.add_argument("--loop", action="store_true", help="replay the trace forever")
    parser.add_argument("--ami-version", default="9.0.0")
    args = parser.parse_args(argv)
    if not args.user:
        args.user = [_user("edge:edge-secret")]
    if args.speed is not None and args.speed <= 0:
        parser.error("--speed must be positive")
    return args


async def serve(args: argparse.Namespace) -> int:
    messages = read_trace(args.trace) if args.trace else []
    server = FakeAmiServer(dict(args.user), host=args.host, port=args.port, ami_version=args.ami_version)
    await server.start()
    log.info("AMI listening on %s:%d (users: %s)", args.host, server.port, ", ".join(server.users))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    player = asyncio.create_task(_play(server, messages, args.speed, args.loop)) if messages else None
    try:
        await stop.wait()
    finally:
        if player is not None:
            player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await player
        await server.stop()
    return 0


async def _play(server: FakeAmiServer, messages: list[AmiMessage], speed: float | None, loop: bool) -> None:
    while True:
        await server.wait_until(lambda: any(s.authenticated for s in server.sessions), timeout=None)
        sent = await server.play(messages, speed=speed)
        log.info("played %d events", sent)
        if not loop:
            return
        await asyncio.sleep(_LOOP_PAUSE)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except TraceError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
