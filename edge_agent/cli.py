"""The ``edge-agent`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from typing import IO

from edge_agent import __version__
from edge_agent.ami.connector import AmiConnector, AmiSettings, AmiSink
from edge_agent.calls.channels import ChannelRules
from edge_agent.calls.interpreter import CallInterpreter
from edge_agent.config import AgentConfig, load_config
from edge_agent.errors import AmiAuthError, AmiPermissionError, ConfigError, EdgeAgentError
from edge_agent.logs import setup_logging
from edge_agent.sinks import InterpretingSink, RecordingSink
from edge_agent.trace import NumberMasker, TraceReader, TraceWriter
from wire_protocol.call_events import CallEnded, CallEvent

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AMI_REFUSED = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Connects an Asterisk PBX to the Bitrix24 CRM through the pbxlink cloud.",
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="interpret a trace file offline and print call events")
    replay.add_argument("trace", help="trace file (JSON Lines of AMI messages)")
    replay.add_argument("--summary", action="store_true", help="print one summary per finished call instead")
    replay.add_argument("--config", metavar="FILE", help="TOML settings file (its [calls] rules apply)")

    def ami_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", metavar="FILE", help="TOML settings file ([ami], [calls])")
        group = sub.add_argument_group(
            "AMI (defaults from EDGE_AMI_HOST, EDGE_AMI_PORT, EDGE_AMI_USER, EDGE_AMI_SECRET)"
        )
        group.add_argument("--ami-host")
        group.add_argument("--ami-port", type=int)
        group.add_argument("--ami-user")
        group.add_argument("--ami-secret-env", metavar="VAR", help="read the AMI secret from this variable")

    record = commands.add_parser("record", help="record the live AMI stream to a trace file (for support)")
    ami_options(record)
    record.add_argument("--out", required=True, help="trace file to write ('-' for standard output)")
    record.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    record.add_argument("--mask", action="store_true", help="mask phone numbers (consistently within the file)")
    record.add_argument("--all-events", action="store_true", help="do not filter events on the server")

    watch = commands.add_parser("watch", help="print live call events from the PBX (no cloud)")
    ami_options(watch)
    watch.add_argument("--summary", action="store_true", help="print only a summary per finished call")
    watch.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")

    run = commands.add_parser("run", help="the service: stream calls to the cloud, run click-to-call")
    ami_options(run)

    doctor = commands.add_parser("doctor", help="check AMI, cloud, token, clock and outbox (exit 1 on a problem)")
    ami_options(doctor)
    doctor.add_argument("--skip-cloud", action="store_true", help="do not open a connection to the cloud")
    doctor.add_argument("--timeout", type=float, default=10.0, help="seconds per check (default 10)")
    backfill = commands.add_parser(
        "backfill", help="send the calls of a period that the cloud never got, from the PBX's CDR database"
    )
    backfill.add_argument("--config", metavar="FILE", help="TOML settings file ([cdr], data_dir, [calls])")
    backfill.add_argument("--since", required=True, help="ISO 8601 (no zone: local time) or --since=-2h / -30m / -1d")
    backfill.add_argument("--until", help="same forms; default: one minute ago (CDR rows can be written late)")
    backfill.add_argument("--dry-run", action="store_true", help="print what would be sent, store nothing")
    return parser


class _Redact(logging.Filter):
    """Last line of defence: no log line carries the token or the AMI secret, whoever logged it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def _redact_secrets(config: AgentConfig) -> None:
    secrets = [config.ami.secret.get_secret_value()]
    if config.cloud is not None:
        secrets.append(config.cloud.token.get_secret_value())
    if config.cdr is not None and config.cdr.parsed.password:
        secrets.append(config.cdr.parsed.password)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Redact(secrets))


async def _run_agent(config: AgentConfig) -> int:
    from edge_agent.agent import Agent

    agent = Agent(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.stop)
    await agent.run()
    return EXIT_OK


async def _doctor(config: AgentConfig, args: argparse.Namespace) -> int:
    from edge_agent.doctor import print_report, run_doctor

    checks = await run_doctor(config, skip_cloud=args.skip_cloud, timeout=args.timeout)
    return EXIT_OK if print_report(checks, sys.stdout) else EXIT_ERROR


def _print_event(event: CallEvent, summary_only: bool, out: IO[str]) -> None:
    if summary_only:
        if isinstance(event, CallEnded):
            out.write(json.dumps(event.summary.to_json_dict(), ensure_ascii=False) + "\n")
    else:
        out.write(json.dumps(event.model_dump(mode="json", by_alias=True), ensure_ascii=False) + "\n")
    out.flush()


def replay(path: str, *, summary: bool, out: IO[str], err: IO[str], rules: ChannelRules | None = None) -> int:
    interpreter = CallInterpreter(rules)
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        err.write(f"edge-agent: cannot read {path}: {exc.strerror}\n")
        return EXIT_ERROR
    with stream:
        reader = TraceReader(stream, source=path)
        for message in reader:
            for event in interpreter.feed(message):
                _print_event(event, summary, out)
    for problem in reader.errors[:10]:
        err.write(f"edge-agent: skipped {problem}\n")
    if len(reader.errors) > 10:
        err.write(f"edge-agent: skipped {len(reader.errors) - 10} more bad lines\n")
    if interpreter.open_calls:
        err.write(f"edge-agent: {interpreter.open_calls} call(s) still in progress at the end of the trace\n")
    return EXIT_OK


def _config(args: argparse.Namespace, *, filtered: bool = True, need_cloud: bool = False) -> AgentConfig:
    overrides: dict[str, object | None] = {}
    if hasattr(args, "ami_host"):
        overrides = {"host": args.ami_host, "port": args.ami_port, "username": args.ami_user}
        if args.ami_secret_env:
            overrides["secret"] = os.environ.get(args.ami_secret_env)
    return load_config(os.environ, path=args.config, ami_overrides=overrides, filtered=filtered, need_cloud=need_cloud)


async def _run_connector(args: argparse.Namespace, settings: AmiSettings, sink: AmiSink) -> int:
    connector = AmiConnector(settings, sink)
    task = asyncio.ensure_future(connector.run())
    try:
        if args.seconds:
            await asyncio.wait({task}, timeout=args.seconds)
        else:
            await task
    finally:
        await connector.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log_format = os.environ.get("EDGE_LOG_FORMAT") or "logfmt"
    if log_format not in ("logfmt", "json"):
        print(f"edge-agent: EDGE_LOG_FORMAT={log_format!r}: expected 'logfmt' or 'json'", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(verbose=args.verbose, fmt=log_format)  # structured lines, numbers masked (edge_agent.logs)
    try:
        if args.command == "replay":
            rules = load_config(os.environ, path=args.config).calls if args.config else None
            return replay(args.trace, summary=args.summary, out=sys.stdout, err=sys.stderr, rules=rules)
        if args.command == "record":
            with contextlib.ExitStack() as stack:
                out = sys.stdout if args.out == "-" else stack.enter_context(open(args.out, "a", encoding="utf-8"))
                writer = TraceWriter(out, masker=NumberMasker() if args.mask else None)
                settings = _config(args, filtered=not args.all_events).ami
                code = asyncio.run(_run_connector(args, settings, RecordingSink(writer)))
                print(f"edge-agent: recorded {writer.count} messages to {args.out}", file=sys.stderr)
                return code
        if args.command == "watch":
            config = _config(args)
            sink = InterpretingSink(
                CallInterpreter(config.calls), lambda event: _print_event(event, args.summary, sys.stdout)
            )
            return asyncio.run(_run_connector(args, config.ami, sink))
        if args.command == "run":
            config = _config(args, need_cloud=True)
            _redact_secrets(config)
            return asyncio.run(_run_agent(config))
        if args.command == "backfill":
            from datetime import UTC, datetime

            from edge_agent.cdr.command import DEFAULT_MARGIN, parse_moment, run_backfill

            config = _config(args)
            _redact_secrets(config)
            now = datetime.now(UTC)
            since = parse_moment(args.since, now)
            until = parse_moment(args.until, now) if args.until else now - DEFAULT_MARGIN
            run_backfill(config, since, until, dry_run=args.dry_run, out=sys.stdout, now=now)
            return EXIT_OK
        if args.command == "doctor":
            try:
                config = _config(args)
            except ConfigError as exc:
                print(f"FAIL  settings  {exc}\nedge-agent doctor: problems with settings")
                return EXIT_ERROR
            _redact_secrets(config)
            return asyncio.run(_doctor(config, args))
    except (AmiAuthError, AmiPermissionError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_AMI_REFUSED
    except EdgeAgentError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # the reader went away (`edge-agent replay … | head`)
        sys.stderr.close()
        return EXIT_OK
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
