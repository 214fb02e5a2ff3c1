"""The AMI connector against a real TCP AMI server (the fake), faults included."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import SecretStr

from edge_agent.ami.connector import AmiConnector, AmiSettings
from edge_agent.ami.framing import AmiMessage
from edge_agent.backoff import Backoff
from edge_agent.calls.interpreter import AMI_EVENT_FILTERS, CallInterpreter
from edge_agent.errors import AmiAuthError, AmiPermissionError
from edge_agent.sinks import InterpretingSink
from sandbox.ami_server import FakeAmiServer, UserSpec
from wire_protocol.call_events import CallEnded, CallEvent

pytestmark = pytest.mark.integration

AGENT = UserSpec("edge-secret", read="system,call,agent,dialplan", write="system,reporting,originate")


class Recorder:
    """A sink that remembers what it got, and in which order (``order``: "snapshot" or the event name)."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.snapshots: list[list[str]] = []
        self.events: list[AmiMessage] = []
        self.changed = asyncio.Event()

    def on_snapshot(self, live_channels: list[AmiMessage], at: float) -> None:
        self.order.append("snapshot")
        self.snapshots.append([m["Uniqueid"] for m in live_channels])
        self.changed.set()

    def on_event(self, message: AmiMessage) -> None:
        self.order.append(message["Event"])
        self.events.append(message)
        self.changed.set()

    def named(self, event: str) -> list[AmiMessage]:
        return [m for m in self.events if m["Event"] == event]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)


def settings(port: int, *, username: str = "edge", secret: str = "edge-secret", **extra: object) -> AmiSettings:
    values: dict[str, object] = {
        "port": port,
        "username": username,
        "secret": SecretStr(secret),
        "ping_interval": 0.2,
        "ping_timeout": 0.2,
        "action_timeout": 1.0,
        "reconnect_initial": 0.05,
        "reconnect_max": 0.2,
        "event_filters": AMI_EVENT_FILTERS,
    }
    values.update(extra)
    return AmiSettings.model_validate(values)


@contextlib.asynccontextmanager
async def running(connector: AmiConnector) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.ensure_future(connector.run())
    try:
        yield task
    finally:
        await connector.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 2)


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll a condition the connector exposes no event for (tests only)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def newchannel(name: str, uid: str, linkedid: str, **fields: str) -> AmiMessage:
    return {
        "Event": "Newchannel",
        "Channel": name,
        "Uniqueid": uid,
        "Linkedid": linkedid,
        "ChannelState": "4",
        **fields,
    }


async def test_logs_in_filters_and_delivers_the_snapshot_before_events() -> None:
    async with FakeAmiServer({"edge": AGENT}) as server:
        await server.emit(newchannel("PJSIP/carrier-00000001", "pbx-1.1", "pbx-1.1"))  # a call already up
        sink = Recorder()
        connector = AmiConnector(settings(server.port), sink)
        async with running(connector):
            await asyncio.wait_for(connector.connected.wait(), 3)
            await server.emit(newchannel("PJSIP/101-00000002", "pbx-1.2", "pbx-1.1"))
            await sink.wait_for(lambda: bool(sink.named("Newchannel")))
        assert sink.order[0] == "snapshot" and sink.snapshots[0] == ["pbx-1.1"]
        [event] = sink.named("Newchannel")
        assert event["Uniqueid"] == "pbx-1.2" and float(event["_ts"]) > 0
        filters = [a["Filter"] for a in server.actions if a.get("Action") == "Filter"]
        assert filters == list(AMI_EVENT_FILTERS)
        [login] = [a for a in server.actions if a.get("Action") == "Login"]
        assert login["Events"] == "call,agent,dialplan,system"
        assert connector.asterisk_version == f"Asterisk {server.asterisk_version}"


async def test_server_side_filter_drops_what_the_interpreter_ignores() -> None:
    async with FakeAmiServer({"edge": AGENT}) as server:
        sink = Recorder()
        connector = AmiConnector(settings(server.port), sink)
        async with running(connector):
            await asyncio.wait_for(connector.connected.wait(), 3)
            await server.emit({"Event": "VarSet", "Uniqueid": "u", "Variable": "DIALSTATUS", "Value": "x"})
            await server.emit({"Event": "VarSet", "Uniqueid": "u", "Variable": "MIXMONITOR_FILENAME", "Value": "f"})
            await server.emit({"Event": "Newexten", "Uniqueid": "u", "Application": "Set", "AppData": "a=b"})
            await server.emit({"Event": "Hangup", "Uniqueid": "u", "Channel": "PJSIP/1-1", "Cause": "16"})
            await sink.wait_for(lambda: bool(sink.named("Hangup")))
        assert [(m["Event"], m.get("Variable")) for m in sink.events] == [
            ("FullyBooted", None),
            ("VarSet", "MIXMONITOR_FILENAME"),
            ("Hangup", None),
        ]


async def test_wrong_secret_is_reported_at_once_and_not_retried() -> None:
    async with FakeAmiServer({"edge": AGENT}) as server:
        connector = AmiConnector(settings(server.port, secret="wrong"), Recorder())
        with pytest.raises(AmiAuthError, match=r"refused the AMI login for user 'edge'.*manager.conf"):
            await asyncio.wait_for(connector.run(), 3)
        assert [(a.username, a.success) for a in server.logins] == [("edge", False)]


async def test_missing_reporting_permission_is_fatal_and_explained() -> None:
    weak = UserSpec("edge-secret", read="call", write="originate")
    async with FakeAmiServer({"edge": weak}) as server:
        connector = AmiConnector(settings(server.port), Recorder())
        with pytest.raises(AmiPermissionError, match="CoreShowChannels"):
            await asyncio.wait_for(connector.run(), 3)


async def test_filter_refused_is_a_warning_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    no_system = UserSpec("edge-secret", read="call,system", write="reporting")
    async with FakeAmiServer({"edge": no_system}) as server:
        connector = AmiConnector(settings(server.port), Recorder())
        async with running(connector):
            await asyncio.wait_for(connector.connected.wait(), 3)
        assert "could not install event filter" in caplog.text


async def test_reconnects_after_a_drop_and_closes_calls_that_ended_in_the_gap() -> None:
    async with FakeAmiServer({"edge": AGENT}) as server:
        events: list[CallEvent] = []
        interpreter = CallInterpreter()
        connector = AmiConnector(settings(server.port), InterpretingSink(interpreter, events.append))
        async with running(connector):
            await asyncio.wait_for(connector.connected.wait(), 3)
            await server.emit(newchannel("PJSIP/carrier-00000001", "pbx-1.1", "pbx-1.1", CallerIDNum="79261234567"))
            await server.wait_until(lambda: True)
            await asyncio.sleep(0.1)
            assert interpreter.open_calls == 1
            await server.drop_connections()
            # While the agent is away the call ends; nobody hears the Hangup.
            await server.emit(
                {
                    "Event": "Hangup",
                    "Channel": "PJSIP/carrier-00000001",
                    "Uniqueid": "pbx-1.1",
                    "Linkedid": "pbx-1.1",
                    "Cause": "16",
                }
            )
            await wait_until(lambda: connector.sessions >= 2 and connector.connected.is_set())
        ended = [e for e in events if isinstance(e, CallEnded)]
        assert len(ended) == 1 and ended[0].reason == "lost" and ended[0].summary.result == "missed"
        assert interpreter.open_calls == 0


async def test_half_open_link_is_detected_by_the_watchdog() -> None:
    async with FakeAmiServer({"edge": AGENT}) as server:
        sink = Recorder()
        connector = AmiConnector(settings(server.port), sink)
        async with running(connector):
            await asyncio.wait_for(connector.connected.wait(), 3)
            server.answer_pings = False  # TCP stays open, Asterisk says nothing
            await wait_until(lambda: not connector.connected.is_set())
            server.answer_pings = True
            await sink.wait_for(lambda: len(sink.snapshots) >= 2)
        assert connector.sessions >= 2


async def test_shutdown_event_triggers_a_reconnect() -> None:
    async with FakeAmiServer({"edge": AGENT}) as server:
        sink = Recorder()
        connector = AmiConnector(settings(server.port), sink)
        async with running(connector):
            await asyncio.wait_for(connector.connected.wait(), 3)
            await server.send_shutdown(restart=True)
            await sink.wait_for(lambda: len(sink.snapshots) >= 2)
        assert sink.named("Shutdown")


async def test_backoff_grows_while_asterisk_is_down() -> None:
    server = FakeAmiServer({"edge": AGENT})
    await server.start()
    port = server.port
    await server.stop()  # nothing listens on that port any more
    delays: list[float] = []
    stop = asyncio.Event()

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) >= 6:
            stop.set()
        await asyncio.sleep(0)

    connector = AmiConnector(
        settings(port), Recorder(), backoff=Backoff(initial=1, maximum=16, rng=lambda: 1.0), sleep=fake_sleep
    )
    task = asyncio.ensure_future(connector.run())
    await asyncio.wait_for(stop.wait(), 5)
    await connector.stop()
    await asyncio.wait_for(task, 2)
    assert delays[:6] == [1, 2, 4, 8, 16, 16]


async def test_split_writes_and_lf_only_framing_are_understood() -> None:
    async with FakeAmiServer({"edge": AGENT}) as server:
        server.split_writes = True
        server.lf_only = True
        sink = Recorder()
        connector = AmiConnector(settings(server.port), sink)
        async with running(connector):
            await asyncio.wait_for(connector.connected.wait(), 3)
            for n in range(20):
                await server.emit(newchannel(f"PJSIP/10{n % 10}-{n:08x}", f"pbx-2.{n}", f"pbx-2.{n}"))
            await sink.wait_for(lambda: len(sink.named("Newchannel")) >= 20)
        uids = [m["Uniqueid"] for m in sink.named("Newchannel")]
        assert uids == [f"pbx-2.{n}" for n in range(20)]


async def test_originate_sends_what_asterisk_and_panoramisk_need_and_reads_the_outcome() -> None:
    from edge_agent.ami.originate import OriginateRequest
    from sandbox.ami_server import REASON_BUSY, OriginateOutcome

    async with FakeAmiServer({"edge": AGENT}) as server:
        outcomes = iter([OriginateOutcome(), OriginateOutcome(reason=REASON_BUSY, delay=0.05)])

        async def script(action: AmiMessage) -> OriginateOutcome:
            return next(outcomes)

        server.on_originate = script
        sink = Recorder()
        connector = AmiConnector(settings(server.port), sink)
        async with running(connector):
            await asyncio.wait_for(connector.connected.wait(), 3)
            answered = await connector.originate(OriginateRequest("cmd-1", "101", "79261234567"))
            busy = await connector.originate(OriginateRequest("cmd-2", "102", "79031112233", ring_seconds=5))
            await sink.wait_for(lambda: len(sink.named("OriginateResponse")) == 2)
        assert (answered.success, answered.reason, busy.success, busy.reason) == (True, "answered", False, "busy")
        first = next(a for a in server.actions if a.get("Action") == "Originate")
        assert first["Async"] == "true" and first["ActionID"] == "pbxlink-originate/cmd-1"
        assert (first["Channel"], first["Context"], first["Exten"], first["Timeout"]) == (
            "PJSIP/101",
            "pbxlink-originate",
            "79261234567",
            "30000",
        )
        assert first["Variable"].split("\n") == [
            "__PBXLINK_COMMAND_ID=cmd-1",
            "__PBXLINK_DIAL_NUMBER=79261234567",
        ]
        # the interpreter hears OriginateResponse too (it ties the call to the command)
        assert [m["ActionID"] for m in sink.named("OriginateResponse")] == [
            "pbxlink-originate/cmd-1",
            "pbxlink-originate/cmd-2",
        ]


async def test_originate_without_permission_is_a_clear_rejection() -> None:
    from edge_agent.ami.originate import OriginateRequest

    no_originate = UserSpec("edge-secret", read="system,call", write="system")
    async with FakeAmiServer({"edge": no_originate}) as server:
        connector = AmiConnector(settings(server.port), Recorder())
        async with running(connector):
            await asyncio.wait_for(connector.connected.wait(), 3)
            result = await connector.originate(OriginateRequest("cmd-3", "101", "79261234567"))
        assert (result.success, result.reason) == (False, "rejected")
        assert "Permission denied" in result.message


async def test_a_sink_that_fails_on_one_event_costs_neither_the_session_nor_the_next_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Flaky(Recorder):
        def on_event(self, message: AmiMessage) -> None:
            if message.get("Uniqueid") == "boom":
                raise RuntimeError("disk full")
            super().on_event(message)

    async with FakeAmiServer({"edge": AGENT}) as server:
        sink = Flaky()
        connector = AmiConnector(settings(server.port), sink)
        async with running(connector):
            await asyncio.wait_for(connector.connected.wait(), 3)
            await server.emit(newchannel("PJSIP/101-00000001", "boom", "boom"))
            await server.emit(newchannel("PJSIP/102-00000002", "fine", "fine"))
            await sink.wait_for(lambda: bool(sink.named("Newchannel")))
        assert [m["Uniqueid"] for m in sink.named("Newchannel")] == ["fine"]
        assert connector.sessions == 1 and "disk full" in caplog.text


async def test_stop_cuts_the_reconnect_backoff_short() -> None:
    server = FakeAmiServer({"edge": AGENT})
    await server.start()
    port = server.port
    await server.stop()  # Asterisk is down: the connector waits out a long backoff
    connector = AmiConnector(settings(port), Recorder(), backoff=Backoff(initial=30, maximum=30, rng=lambda: 1.0))
    task = asyncio.ensure_future(connector.run())
    await asyncio.sleep(0.3)  # the first attempt failed; now it sleeps 30 s
    assert not task.done()
    await connector.stop()
    await asyncio.wait_for(task, 2)  # not 30 s
