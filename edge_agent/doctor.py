"""``edge-agent doctor``: is everything the agent needs in place? One line per check, exit 1 on a failure.

Checks: the AMI port answers; the login works; the AMI user may run CoreShowChannels (the agent refuses to
start without it), Filter (else it reads every event) and Originate (else click-to-call fails); the cloud
answers the websocket upgrade; the token is accepted (401/403 vs a ``welcome``); the clock agrees with the
cloud's HTTP ``Date`` (call times in the CRM come from this host); the outbox's depth, size and oldest event;
where the PBX's recordings are seen from here, and whether they can become MP3.

Probes never act on the PBX: the Originate permission is read from the answer to an Originate *without a
channel*, which Asterisk refuses either as ``Permission denied`` (no permission) or ``Channel not
specified`` (permission, and nothing dialed).

Caveat: the token check opens a real agent connection, and the cloud registers the newest connection of
an agent; a running agent is re-registered by its next renewal. Use ``--skip-cloud`` on a live system if
click-to-call must not blink.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal

from websockets.asyncio.client import ClientConnection

from edge_agent import __version__
from edge_agent.ami.connector import AmiConnector
from edge_agent.ami.framing import AmiMessage
from edge_agent.calls.interpreter import AMI_EVENT_FILTERS
from edge_agent.config import AgentConfig
from edge_agent.errors import AmiAuthError, AmiPermissionError, CdrError, LinkError, TokenRefusedError
from edge_agent.link.client import LinkOptions, open_connection, server_date
from edge_agent.outbox import outbox_path
from edge_agent.recordings.files import find_converter
from edge_agent.recordings.paths import local_path
from wire_protocol.messages import Hello, PlanInfo, ProtocolError, Welcome, decode_cloud_message, encode

__all__ = ["Check", "check_recordings", "print_report", "run_doctor"]

Status = Literal["ok", "warn", "fail", "skip"]

#: Clock skew beyond these (seconds) is worth a warning / a failure.
SKEW_WARN, SKEW_FAIL = 2.0, 30.0
#: An unacknowledged event older than this means the cloud is not taking events.
STALE_EVENT_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str


class _NullSink:
    def on_snapshot(self, live_channels: list[AmiMessage], at: float) -> None:
        pass

    def on_event(self, message: AmiMessage) -> None:
        pass


async def run_doctor(
    config: AgentConfig, *, skip_cloud: bool = False, timeout: float = 10.0, clock: Callable[[], float] = time.time
) -> list[Check]:
    checks = await _check_ami(config, timeout)
    if skip_cloud:
        checks.append(Check("cloud", "skip", "skipped (--skip-cloud)"))
    else:
        checks.extend(await _check_cloud(config, timeout, clock))
    checks.extend(_check_outbox(config, clock))
    checks.extend(await asyncio.to_thread(_check_cdr, config, clock))
    checks.extend(check_recordings(config))
    return checks


def check_recordings(config: AgentConfig) -> list[Check]:
    """Is Asterisk's monitor directory visible here (through ``root``/``path_prefix_map``), can WAV become MP3,
    and how many recordings wait in the queue."""
    settings = config.recordings
    if not settings.enabled:
        return [Check("recordings", "skip", "off ([recordings] enabled / EDGE_RECORDINGS)")]
    pbx_dir = settings.relative_dir.rstrip("/")
    here = local_path(pbx_dir, settings)
    if here is not None and here.is_dir():
        where = Check("recordings files", "ok", f"the PBX's {pbx_dir} is {here} here")
    else:
        where = Check(
            "recordings files",
            "warn",
            f"the PBX's {pbx_dir} would be {here} here, which is not a directory (yet?): set EDGE_RECORDINGS_ROOT "
            "or [recordings] path_prefix_map if the agent sees the PBX's files elsewhere",
        )
    converter = find_converter(settings)
    if settings.converter == "none":
        mp3 = Check("recordings MP3", "ok", "conversion off: recordings are uploaded as they are (WAV)")
    elif converter is None:
        wanted = "lame or ffmpeg" if settings.converter == "auto" else settings.converter
        mp3 = Check("recordings MP3", "warn", f"no {wanted} on PATH: MP3 is uploaded as WAV (apt install lame)")
    else:
        mp3 = Check("recordings MP3", "ok", f"{converter[0]} ({converter[1]})")
    checks = [where, mp3]
    if config.data_dir is not None and outbox_path(config.data_dir).exists():
        try:
            with contextlib.closing(sqlite3.connect(f"file:{outbox_path(config.data_dir)}?mode=ro", uri=True)) as db:
                rows = db.execute("SELECT state, COUNT(*) FROM recordings GROUP BY state").fetchall()
        except sqlite3.Error:
            rows = []  # no recordings table yet: nothing queued
        if rows:
            queued = ", ".join(f"{count} {state}" for state, count in sorted(rows))
            checks.append(Check("recordings queue", "ok", queued))
    return checks


def _check_cdr(config: AgentConfig, clock: Callable[[], float]) -> list[Check]:
    """Can the CDR database be read (backfill, when configured)? Reads the last day's rows."""
    if config.cdr is None:
        return []
    from edge_agent.cdr.readers import open_reader

    where = config.cdr.parsed.redacted
    try:
        reader = open_reader(config.cdr)
        try:
            now = datetime.fromtimestamp(clock(), UTC)
            rows = reader.rows(now - timedelta(days=1), now + timedelta(minutes=5))
        finally:
            reader.close()
    except CdrError as exc:
        return [Check("CDR", "fail", str(exc))]
    linked = sum(1 for row in rows if row.linkedid)
    if rows and not linked:
        return [Check("CDR", "warn", f"{where}: {len(rows)} row(s) in 24 h but no linkedid: legs cannot be grouped")]
    return [Check("CDR", "ok", f"{where}: {len(rows)} row(s) in the last 24 h")]


async def _check_ami(config: AgentConfig, timeout: float) -> list[Check]:
    settings = config.ami
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(settings.host, settings.port), timeout)
        writer.close()
    except (OSError, TimeoutError) as exc:
        detail = f"{settings.address}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else 'no answer'}"
        return [Check("AMI reachable", "fail", detail + " (is Asterisk running, manager.conf enabled?)")]
    checks = [Check("AMI reachable", "ok", settings.address)]
    connector = AmiConnector(settings, _NullSink())
    task = asyncio.create_task(connector.run())
    connected = asyncio.create_task(connector.connected.wait())
    try:
        await asyncio.wait({task, connected}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task.done() and (error := task.exception()) is not None:
            if isinstance(error, AmiAuthError):
                return [*checks, Check("AMI login", "fail", str(error))]
            if isinstance(error, AmiPermissionError):
                checks.append(Check("AMI login", "ok", f"user {settings.username!r}"))
                return [*checks, Check("AMI CoreShowChannels", "fail", str(error))]
            return [*checks, Check("AMI login", "fail", str(error))]
        if not connector.connected.is_set():
            return [*checks, Check("AMI login", "fail", f"not logged in within {timeout:g} s")]
        checks.append(Check("AMI login", "ok", f"user {settings.username!r} ({connector.banner or 'no banner'})"))
        checks.append(Check("AMI CoreShowChannels", "ok", "allowed (calls are recovered after a reconnect)"))
        answer = await connector.send_action_raw(
            {"Action": "Filter", "Operation": "Add", "Filter": AMI_EVENT_FILTERS[0]}
        )
        if answer.get("Response") == "Success":
            checks.append(Check("AMI Filter", "ok", "server-side event filters allowed"))
        else:
            checks.append(
                Check("AMI Filter", "warn", f"{answer.get('Message')}: every event is read; grant write 'system'")
            )
        answer = await connector.send_action_raw({"Action": "Originate"})
        message = str(answer.get("Message") or "")
        if "permission denied" in message.lower():
            checks.append(Check("AMI Originate", "fail", "permission denied: click-to-call needs write 'originate'"))
        else:
            checks.append(Check("AMI Originate", "ok", f"allowed (probe answered {message!r})"))
    except Exception as exc:  # a doctor reports; it does not crash
        checks.append(Check("AMI", "fail", f"{type(exc).__name__}: {exc}"))
    finally:
        await connector.stop()
        connected.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task
    return checks


async def _check_cloud(config: AgentConfig, timeout: float, clock: Callable[[], float]) -> list[Check]:
    if config.cloud is None:
        return [Check("cloud", "fail", "no [cloud] url/token (EDGE_CLOUD_URL, EDGE_TOKEN)")]
    url = config.cloud.url
    options = LinkOptions(open_timeout=timeout)
    asked = clock()
    try:
        connection = await open_connection(url, config.cloud.token.get_secret_value(), options, probe=True)
    except TokenRefusedError as exc:
        return [Check("cloud reachable", "ok", url), Check("token", "fail", str(exc))]
    except LinkError as exc:
        return [Check("cloud reachable", "fail", str(exc))]
    checks = [Check("cloud reachable", "ok", url)]
    try:
        date = server_date(connection)
        here = (asked + clock()) / 2  # when the cloud most likely stamped its answer
        await connection.send(encode(Hello(agent_version=__version__, capabilities=["originate"])))
        welcome = await asyncio.wait_for(_welcome(connection), timeout)
        if welcome is None:
            checks.append(Check("token", "fail", "the cloud accepted the connection but refused this agent"))
        else:
            checks.append(
                Check(
                    "token", "ok", f"agent {welcome.agent_id} of {welcome.tenant}; cloud holds seq {welcome.acked_seq}"
                )
            )
            checks.append(_license_check(welcome.plan))
        if date is None:
            checks.append(Check("clock", "skip", "the cloud sent no HTTP Date; not compared"))
        else:
            skew = here - (date + 0.5)  # Date is truncated to the second
            status: Status = "ok" if abs(skew) < SKEW_WARN else "warn" if abs(skew) < SKEW_FAIL else "fail"
            checks.append(Check("clock", status, f"{skew:+.1f} s from the cloud (HTTP Date, 1 s resolution); use NTP"))
    except TimeoutError:
        checks.append(Check("token", "fail", f"no welcome within {timeout:g} s"))
    except Exception as exc:
        checks.append(Check("token", "fail", f"{type(exc).__name__}: {exc}"))
    finally:
        with contextlib.suppress(Exception):
            await connection.close()
    return checks


def _license_check(plan: PlanInfo | None) -> Check:
    """The portal's plan as the cloud reported it: what it includes and when it ends."""
    if plan is None:
        return Check("license", "skip", "the cloud did not say")
    ends = f", ends {plan.ends_at:%Y-%m-%d %H:%M} UTC" if plan.ends_at else ""
    features = ", ".join(plan.features) or "none"
    text = f"{plan.plan} ({plan.state}{ends}); features: {features}"
    if plan.state == "restricted":
        return Check("license", "warn", f"{text}; {plan.reason}" if plan.reason else text)
    return Check("license", "warn" if plan.state == "grace" else "ok", text)


async def _welcome(connection: ClientConnection) -> Welcome | None:
    async for text in connection:
        try:
            message = decode_cloud_message(text)
        except ProtocolError:
            continue
        if isinstance(message, Welcome):
            return message
        if getattr(message, "code", None) == "not_authorized":
            return None
    raise TimeoutError


def _check_outbox(config: AgentConfig, clock: Callable[[], float]) -> list[Check]:
    if config.data_dir is None:
        return [Check("outbox", "skip", "no data_dir (EDGE_DATA_DIR)")]
    path = outbox_path(config.data_dir)
    if not path.exists():
        writable = _writable(Path(config.data_dir))
        status: Status = "ok" if writable else "fail"
        return [Check("outbox", status, f"{path} not created yet" + ("" if writable else "; directory not writable"))]
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            depth, oldest = db.execute("SELECT COUNT(*), MIN(stored_at) FROM events").fetchone()
            rejected = db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return [Check("outbox", "fail", f"{path}: {exc}")]
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    bound = config.outbox_max_events
    age = clock() - oldest if oldest is not None else 0.0
    detail = f"{depth} event(s) waiting of {bound}, {size / 1e6:.1f} MB"
    if oldest is not None:
        detail += f", oldest {age:.0f} s old"
    status = "ok"
    if depth >= bound:
        status = "fail"
    elif depth >= 0.8 * bound or age > STALE_EVENT_SECONDS or rejected:
        status = "warn"
    if rejected:
        detail += f"; {rejected} event(s) set aside as undeliverable (table 'rejected')"
    return [Check("outbox", status, detail)]


def _writable(directory: Path) -> bool:
    probe = directory if directory.exists() else directory.parent
    try:
        with open(probe / ".edge-agent-doctor", "w"):
            pass
        (probe / ".edge-agent-doctor").unlink()
        return True
    except OSError:
        return False


def print_report(checks: list[Check], out: IO[str]) -> bool:
    """Print the report; True when nothing failed."""
    width = max(len(c.name) for c in checks)
    for check in checks:
        out.write(f"{check.status.upper():<5} {check.name:<{width}}  {check.detail}\n")
    failed = [c.name for c in checks if c.status == "fail"]
    out.write(
        ("edge-agent doctor: problems with " + ", ".join(failed) if failed else "edge-agent doctor: all good") + "\n"
    )
    return not failed
