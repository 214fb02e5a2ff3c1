"""Run the emulator standalone: ``python -m sandbox.bitrix24 [--port 8090] [--portal DOMAIN] ...``.

Prints the portal pages, REST endpoints and the OAuth URL. With ``--install`` the app is installed on every
portal at start (ONAPPINSTALL goes to its handler URL, if given) and the tokens are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from sandbox.bitrix24.emulator import App, Emulator
from sandbox.bitrix24.portal import User
from sandbox.bitrix24.server import EmulatorServer, fetch_url

DEMO_USERS = [(2, "Anna", "Petrova", "101"), (3, "Boris", "Ivanov", "102"), (4, "Clara", "Smirnova", "103")]


def _user(value: str) -> tuple[int, str, str, str]:
    parts = value.split(":")
    if len(parts) != 3 or not parts[0].isdigit():
        raise argparse.ArgumentTypeError(f"expected ID:NAME:EXTENSION, got {value!r}")
    return int(parts[0]), parts[1], "", parts[2]


def _app(value: str) -> App:
    client_id, sep, rest = value.partition(":")
    secret, _, handler = rest.partition(":")
    if not sep or not client_id or not secret:
        raise argparse.ArgumentTypeError(f"expected CLIENT_ID:SECRET[:HANDLER_URL], got {value!r}")
    return App(client_id, secret, handler_url=handler)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.bitrix24", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--portal", action="append", default=[], help="portal domain; repeatable")
    parser.add_argument("--app", type=_app, default=None, help="CLIENT_ID:SECRET[:HANDLER_URL]")
    parser.add_argument("--user", type=_user, action="append", default=[], help="ID:NAME:EXTENSION; repeatable")
    parser.add_argument("--access-ttl", type=float, default=3600.0, help="access token lifetime, seconds")
    parser.add_argument("--burst", type=float, default=50, help="leaky bucket size X (docs: 50, Enterprise 250)")
    parser.add_argument("--rate", type=float, default=2.0, help="leaky bucket drain Y per second (docs: 2 / 5)")
    parser.add_argument("--install", action="store_true", help="install the app on every portal at start")
    parser.add_argument(
        "--allow-private-record-urls",
        action="store_true",
        help="download RECORD_URLs on LAN/loopback addresses (a real portal refuses them)",
    )
    args = parser.parse_args(argv)
    args.portal = args.portal or ["pbxlink-demo.bitrix24.com"]
    args.user = args.user or DEMO_USERS
    args.app = args.app or App("local.pbxlink.0001", "pbxlink-secret")
    return args


def build(args: argparse.Namespace) -> EmulatorServer:
    emulator = Emulator(
        access_ttl=args.access_ttl, fetch=fetch_url, allow_private_record_urls=args.allow_private_record_urls
    )
    server = EmulatorServer(emulator, host=args.host, port=args.port)
    emulator.add_app(args.app)
    for domain in args.portal:
        portal = emulator.add_portal(domain, burst=args.burst, rate=args.rate)
        for uid, name, last, ext in args.user:
            portal.add_user(User(uid, name, last, email=f"{name.lower()}@{domain}", phone_inner=ext))
    return server


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    server = build(args).start()
    em = server.emulator
    print(f"Bitrix24 emulator on {server.url}/  (OAuth: {server.url}/oauth/token/)")
    print(f"app client_id={args.app.client_id} client_secret={args.app.client_secret}")
    for domain, portal in em.portals.items():
        print(f"  {domain}: page {server.url}/portal/{domain}  REST {portal.client_endpoint}")
        if args.install:
            _, tokens = em.install(domain, args.app.client_id)
            print(f"    installed: access_token={tokens['access_token']} refresh_token={tokens['refresh_token']}")
    sys.stdout.flush()
    stop = threading.Event()
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
