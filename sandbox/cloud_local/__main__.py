"""``python -m sandbox.cloud_local``: run the whole cloud on this machine until Ctrl-C, printing its URLs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from sandbox.cloud_local.license import LicenseService
from sandbox.cloud_local.stack import DEFAULT_APP, DEFAULT_TABLES, AwsMode, CloudLocal, CloudLocalConfig, LocalService

_DESCRIBE = {
    "ws": "agents connect here (EDGE_CLOUD_URL)",
    "rest": "the app's REST routes",
    "mgmt": "API Gateway management API (WS_MGMT_ENDPOINT)",
    "dynamodb": "DynamoDB (AWS_ENDPOINT_URL_DYNAMODB)",
    "license": "license server (LICENSE_SERVER_URL)",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.cloud_local",
        description="The pbxlink cloud on this machine: the Chalice app's REST and websocket routes behind a local "
        "API Gateway, with moto (in-process) as AWS unless told otherwise. Ports 0 pick free ports.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--ws-port", type=int, default=8080, help="agents' websocket port (default %(default)s)")
    parser.add_argument("--mgmt-port", type=int, default=8081, help="@connections API port (default %(default)s)")
    parser.add_argument("--rest-port", type=int, default=8000, help="REST API port (default %(default)s)")
    parser.add_argument("--moto-port", type=int, default=0, help="moto server port (default: a free one)")
    parser.add_argument("--app", default=DEFAULT_APP, help="the Chalice app, module:attribute (default %(default)s)")
    parser.add_argument(
        "--tables", default=DEFAULT_TABLES, help="creates the tables, module:function (default %(default)s)"
    )
    parser.add_argument(
        "--table-prefix", help="PBXLINK_TABLE_PREFIX (default: the Chalice stage's, else pbxlink-local-)"
    )
    parser.add_argument(
        "--chalice-stage",
        default="local",
        help="apply this stage's environment_variables from the app's .chalice/config.json (default %(default)s)",
    )
    parser.add_argument("--region", default="us-east-1", help="AWS region (default %(default)s)")
    parser.add_argument("--stage", default="api", help="API Gateway stage in events and paths (default %(default)s)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--aws",
        action="store_true",
        help="use real AWS with the ambient credentials (AWS_PROFILE, ...) instead of moto; creates missing tables",
    )
    where.add_argument("--dynamodb-endpoint", metavar="URL", help="use this DynamoDB (moto_server, DynamoDB Local)")
    where.add_argument(
        "--moto-process",
        action="store_true",
        help="run moto server in a child process (its own core, as DynamoDB is outside a Lambda's process)",
    )
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="websocket idle close, s (AWS: 600)")
    parser.add_argument("--max-duration", type=float, default=7200.0, help="websocket lifetime, s (AWS: 7200)")
    parser.add_argument(
        "--concurrent-messages",
        action="store_true",
        help="handle one connection's messages concurrently, as AWS may (default: one at a time, in order)",
    )
    parser.add_argument("--license-port", type=int, default=8090, help="license server port (default %(default)s)")
    parser.add_argument("--no-license", action="store_true", help="do not run the license server")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request and handler call")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> CloudLocalConfig:
    aws: AwsMode = (
        "aws"
        if args.aws
        else "dynamodb-endpoint"
        if args.dynamodb_endpoint
        else "moto-process"
        if args.moto_process
        else "moto"
    )
    return CloudLocalConfig(
        app=args.app,
        create_tables=args.tables,
        host=args.host,
        ws_port=args.ws_port,
        mgmt_port=args.mgmt_port,
        rest_port=args.rest_port,
        moto_port=args.moto_port,
        aws=aws,
        dynamodb_endpoint=args.dynamodb_endpoint,
        region=args.region,
        table_prefix=args.table_prefix,
        chalice_stage=args.chalice_stage or None,
        stage=args.stage,
        idle_timeout=args.idle_timeout,
        max_duration=args.max_duration,
        concurrent_messages=args.concurrent_messages,
    )


def banner(cloud: CloudLocal) -> str:
    where = {
        "moto": "moto, in-process",
        "moto-process": "moto, in a child process",
        "dynamodb-endpoint": "external endpoint",
        "aws": "real AWS",
    }
    lines = [f"pbxlink cloud-local is up (AWS: {where[cloud.config.aws]}); Ctrl-C stops it"]
    for name, url in cloud.urls().items():
        lines.append(f"  {name:<9} {url:<34} {_DESCRIBE.get(name, '')}".rstrip())
    lines.append(f"  tables    {', '.join(cloud.tables) or '(none)'}")
    lines.append(f"  buckets   {', '.join(cloud.buckets) or '(none)'}")
    lines.append("environment the app runs with (for scripts against the same stack):")
    lines.extend(f"  export {name}={value}" for name, value in sorted(cloud.environment.items()))
    return "\n".join(lines)


async def serve(config: CloudLocalConfig, services: Sequence[LocalService] = ()) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:  # the first signal stops cleanly; a second one interrupts the shutdown
        stop.set()
        for signum in signals:
            loop.remove_signal_handler(signum)

    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    async with CloudLocal(config, services) as cloud:
        print(banner(cloud), flush=True)
        await stop.wait()
        print("cloud-local: stopping", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s"
    )
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    try:
        services = [] if args.no_license else [LicenseService(host=args.host, port=args.license_port)]
        asyncio.run(serve(config_from_args(args), services))
    except OSError as exc:  # a port in use, most often
        print(f"cloud-local: cannot listen: {exc}", file=sys.stderr)
        return 2
    except (ImportError, TypeError, ValueError) as exc:  # --app / --tables / flags that do not fit
        print(f"cloud-local: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
