"""moto server in a process of its own: ``python -m sandbox.cloud_local.moto_process [--port N]``.

In-process moto server shares the interpreter (and its GIL) with everything else cloud-local runs; in AWS,
DynamoDB is not in the Lambda's process. The load benchmark runs it here so the local stack gets the machine's
second core and the handlers stop queueing behind moto's work. It prints the port it listens on, then serves
until its standard input closes (the parent exited or stopped it), so it never outlives the stack.

The transactions cost what they cost in DynamoDB here too (:mod:`sandbox.cloud_local.moto_transactions`), and
moto does not list its package directory per request (:mod:`sandbox.cloud_local.moto_speedups`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from moto.server import ThreadedMotoServer

from sandbox.cloud_local import moto_speedups, moto_transactions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.cloud_local.moto_process", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    moto_transactions.install()
    moto_speedups.install()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
