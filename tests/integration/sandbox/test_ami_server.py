"""The fake AMI server against a raw TCP client and against panoramisk (the client the edge agent uses)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import panoramisk.utils
import pytest
from panoramisk import Manager

from edge_agent.ami.framing import AmiFramer, AmiMessage, format_action
from sandbox.ami_server import (
    REASON_BUSY,
    Endpoint,
    FakeAmiServer,
    OriginateOutcome,
    UserSpec,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
SECRET = "edge-secret"
TIMEOUT = 1.0

CALLER: AmiMessage = {
    "Event": "Newchannel",
    "Privilege": "call,all",
    "Channel": "PJSIP/sipnet-00000010",
    "ChannelState": "4",
    "ChannelStateDesc": "Ring",
    "CallerIDNum": "79261234567",
    "CallerIDName": "<unknown>",
    "ConnectedLineNum": "<unknown>",
    "ConnectedLineName": "<unknown>",
    "Language": "en",
    "AccountCode": "",
    "Context": "from-trunk",
    "Exten": "74951234567",
    "Priority": "1",
    "Uniqueid": "1710140185.100",
    "Linkedid": "1710140185.100",
}


def channel_event(base: AmiMessage, event: str, **fields: str) -> AmiMessage:
    message = dict(base)
    message["Event"] = event
    message.pop("Privilege", None)
    message.update(fields)
    return message


AGENT = channel_event(
    CALLER,
    "Newchannel",
    Channel="PJSIP/101-00000011",
    ChannelState="0",
    ChannelStateDesc="Down",
    CallerIDNum="101",
    Context="from-internal",
    Exten="101",
    Uniqueid="1710140186.101",
    Linkedid="1710140186.101",
)


class RawClient:
    """A bare AMI client: exact bytes out, our framer in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = AmiFramer()
        self.pending: list[AmiMessage] = []
        self.reads = 0

    @classmethod
    async def connect(cls, server: FakeAmiServer) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        return cls(reader, writer)

    async def send(self, action: AmiMessage) -> None:
        self.writer.write(format_action(action))
        await self.writer.drain()

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = TIMEOUT) -> AmiMessage:
        async with asyncio.timeout(timeout):
            while not self.pending:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self.reads += 1
                self.pending.extend(self.framer.feed(data))
        return self.pending.pop(0)

    async def recv_until(self, event: str) -> list[AmiMessage]:
        messages = [await self.recv()]
        while messages[-1].get("Event") != event:
            messages.append(await self.recv())
        return messages

    async def request(self, action: AmiMessage) -> AmiMessage:
        await self.send(action)
        return await self.recv()

    async def login(self, username: str = "edge", secret: str = SECRET, **extra: str) -> AmiMessage:
        answer = await self.request({"Action": "Login", "Username": username, "Secret": secret, **extra})
        assert answer["Response"] == "Success", answer
        return answer

    async def nothing_within(self, seconds: float = 0.1) -> None:
        with contextlib.suppress(TimeoutError):
            message = await self.recv(timeout=seconds)
            raise AssertionError(f"unexpected message {message}")

    async def eof_within(self, seconds: float = TIMEOUT) -> bool:
        try:
            async with asyncio.timeout(seconds):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[FakeAmiServer]:
    users = {
        "edge": UserSpec(SECRET),
        "reader": UserSpec("reader-secret", read={"call", "system"}, write={"call"}),
    }
    async with FakeAmiServer(users, seed=7) as fake:
        yield fake


@pytest.fixture
async def raw(server: FakeAmiServer) -> AsyncIterator[RawClient]:
    client = await RawClient.connect(server)
    yield client
    await client.close()


@contextlib.asynccontextmanager
async def panoramisk_client(
    server: FakeAmiServer, username: str = "edge", secret: str = SECRET, **config: Any
) -> AsyncIterator[tuple[Any, list[Any]]]:
    logged_in = asyncio.Event()
    settings: dict[str, Any] = {"ping_delay": 3600, "reconnect_timeout": 3600, **config}
    manager = Manager(
        host="127.0.0.1",
        port=server.port,
        username=username,
        secret=secret,
        loop=asyncio.get_running_loop(),
        on_login=lambda _manager: logged_in.set(),
        **settings,
    )
    events: list[Any] = []
    manager.register_event("*", lambda _manager, event: events.append(event))
    await manager.connect()
    try:
        await asyncio.wait_for(logged_in.wait(), TIMEOUT)
        yield manager, events
    finally:
        manager.close()


# -- session ----------------------------------------------------------------------------------------------


async def test_banner_has_no_blank_line_and_login_accepts_any_key_order(server: FakeAmiServer, raw: RawClient) -> None:
    banner = await asyncio.wait_for(raw.reader.read(4096), TIMEOUT)
    assert banner == b"Asterisk Call Manager/9.0.0\r\n"
    raw.framer.feed(banner)
    # lower-case keys, Action last: a client that sorts keys must still be understood
    await raw.send_bytes(
        b"actionid: a/1\r\nevents: on\r\nsecret: edge-secret\r\nusername: edge\r\naction: login\r\n\r\n"
    )
    assert await raw.recv() == {"Response": "Success", "ActionID": "a/1", "Message": "Authentication accepted"}
    booted = await raw.recv()
    assert booted["Event"] == "FullyBooted"
    assert booted["Privilege"] == "system,all"
    assert booted["Status"] == "Fully Booted"
    assert server.logins[-1].success and server.logins[-1].username == "edge"


async def test_failed_login_answers_error_then_closes(server: FakeAmiServer, raw: RawClient) -> None:
    answer = await raw.request({"Action": "Login", "ActionID": "x", "Username": "edge", "Secret": "wrong"})
    assert answer == {"Response": "Error", "ActionID": "x", "Message": "Authentication failed"}
    assert await raw.eof_within()
    assert [(a.username, a.success) for a in server.logins] == [("edge", False)]


async def test_md5_challenge_login(server: FakeAmiServer, raw: RawClient) -> None:
    challenge = await raw.request({"Action": "Challenge", "ActionID": "c", "AuthType": "MD5"})
    assert challenge["Response"] == "Success" and challenge["ActionID"] == "c"
    key = hashlib.md5((challenge["Challenge"] + SECRET).encode()).hexdigest()
    answer = await raw.request({"Action": "Login", "AuthType": "MD5", "Username": "edge", "Key": key})
    assert answer["Message"] == "Authentication accepted"
    assert server.logins[-1].auth_type == "md5"


async def test_actions_before_login_unknown_actions_and_logoff(server: FakeAmiServer, raw: RawClient) -> None:
    denied = await raw.request({"Action": "Ping", "ActionID": "p0"})
    assert denied == {"Response": "Error", "ActionID": "p0", "Message": "Permission denied"}
    await raw.login(Events="off")
    unknown = await raw.request({"Action": "Frobnicate", "ActionID": "u"})
    assert unknown["Message"] == (
        "Invalid/unknown command: Frobnicate. Use Action: ListCommands to show available commands."
    )
    missing = await raw.request({"ActionID": "m"})
    assert missing["Message"] == "Missing action in request"
    goodbye = await raw.request({"Action": "Logoff", "ActionID": "bye"})
    assert goodbye == {"Response": "Goodbye", "ActionID": "bye", "Message": "Thanks for all the fish."}
    assert await raw.eof_within()
    assert [a["Action"] for a in server.actions_by_connection[1] if "Action" in a] == [
        "Ping",
        "Login",
        "Frobnicate",
        "Logoff",
    ]


async def test_panoramisk_logs_in_and_pings(server: FakeAmiServer) -> None:
    async with panoramisk_client(server) as (manager, events):
        pong = await asyncio.wait_for(manager.send_action({"Action": "Ping"}), TIMEOUT)
        assert pong.Response == "Success" and pong.Ping == "Pong"
        assert abs(float(pong.Timestamp) - time.time()) < 5
        assert pong.ActionID == server.actions[-1]["ActionID"]
        assert [e.Event for e in events] == ["FullyBooted"]
        assert server.connections == 1


async def test_panoramisk_failed_login_is_closed_by_server(server: FakeAmiServer) -> None:
    manager = Manager(
        host="127.0.0.1",
        port=server.port,
        username="edge",
        secret="nope",
        loop=asyncio.get_running_loop(),
        ping_delay=3600,
        reconnect_timeout=3600,
    )
    await manager.connect()
    try:
        await server.wait_until(lambda: bool(server.logins) and server.connections == 0)
        assert manager.authenticated is False
        assert not server.logins[0].success
    finally:
        manager.close()


# -- permissions, masks, filters ------------------------------------------------------------------------


async def test_originate_filter_and_channels_need_write_classes(server: FakeAmiServer) -> None:
    async with panoramisk_client(server, username="reader", secret="reader-secret") as (manager, _events):
        for action in (
            {
                "Action": "Originate",
                "Channel": "PJSIP/101",
                "Exten": "1",
                "Context": "c",
                "Priority": "1",
                "Async": "true",
            },
            {"Action": "Filter", "Operation": "Add", "Filter": "Event: Newchannel"},
            {"Action": "CoreShowChannels"},
            {"Action": "PJSIPShowEndpoints"},
            {"Action": "Command", "Command": "core show version"},
        ):
            answer = await asyncio.wait_for(manager.send_action(action), TIMEOUT)
            assert (answer.Response, answer.Message) == ("Error", "Permission denied"), action


async def test_event_masks_and_read_classes(server: FakeAmiServer) -> None:
    silent = await RawClient.connect(server)
    calls_only = await RawClient.connect(server)
    restricted = await RawClient.connect(server)  # user "reader" may not read dialplan
    try:
        await silent.login(Events="off")
        await calls_only.login(Events="on")
        assert (await calls_only.recv())["Event"] == "FullyBooted"
        events_answer = await calls_only.request({"Action": "Events", "ActionID": "e", "EventMask": "call"})
        assert events_answer == {"Response": "Success", "ActionID": "e", "Events": "On"}
        await restricted.login("reader", "reader-secret")
        assert (await restricted.recv())["Event"] == "FullyBooted"

        await server.emit({"Event": "VarSet", "Channel": "PJSIP/101-1", "Variable": "X", "Value": "1"})
        await server.emit(CALLER)

        got = await calls_only.recv()
        assert got["Event"] == "Newchannel"
        got = await restricted.recv()
        assert got["Event"] == "Newchannel"
        await silent.nothing_within()
        await calls_only.nothing_within(0.01)
        await restricted.nothing_within(0.01)

        bad = await silent.request({"Action": "Events", "EventMask": ""})
        assert bad["Message"] == "Invalid event mask"
        assert (await silent.request({"Action": "Events", "EventMask": "dialplan"}))["Events"] == "On"
        await server.emit({"Event": "Newexten", "Channel": "PJSIP/101-1", "Application": "Dial"})
        newexten = await silent.recv()
        assert newexten["Privilege"] == "dialplan,all"  # added by the server: the event came without one
    finally:
        for client in (silent, calls_only, restricted):
            await client.close()


async def test_filters_include_and_exclude_like_asterisk(server: FakeAmiServer, raw: RawClient) -> None:
    await raw.login(Events="call")
    for pattern in ("Event: (Newchannel|Hangup)", "!Channel: Local/"):
        answer = await raw.request({"Action": "Filter", "ActionID": "f", "Operation": "Add", "Filter": pattern})
        assert answer == {"Response": "Success", "ActionID": "f", "Message": "Success"}
    bad = await raw.request({"Action": "Filter", "Operation": "Add", "Filter": "X[X"})
    assert bad["Message"] == "Filter did not compile.  Check the syntax of the filter given."
    assert (await raw.request({"Action": "Filter", "Operation": "Remove", "Filter": "x"}))["Message"] == (
        "Unknown operation"
    )

    local = channel_event(CALLER, "Newchannel", Channel="Local/101@from-internal-00000001;1", Uniqueid="9.1")
    await server.emit(local)  # included by name, excluded by channel
    await server.emit(channel_event(CALLER, "Newstate", ChannelState="6", ChannelStateDesc="Up"))  # not included
    await server.emit(CALLER)  # the only one that passes
    await server.emit(channel_event(CALLER, "Hangup", Cause="16"))  # passes too
    assert (await raw.recv())["Channel"] == "PJSIP/sipnet-00000010"
    assert (await raw.recv())["Event"] == "Hangup"
    await raw.nothing_within()


async def test_advanced_filter_match_criteria(server: FakeAmiServer, raw: RawClient) -> None:
    await raw.login(Events="off")
    await raw.request({"Action": "Events", "EventMask": "on"})
    answer = await raw.request(
        {
            "Action": "Filter",
            "Operation": "Add",
            "MatchCriteria": "action(include),name(Newchannel),header(Channel),method(starts_with)",
            "Filter": "PJSIP/101-",
        }
    )
    assert answer["Response"] == "Success"
    pattern_without_method = await raw.request(
        {"Action": "Filter", "Operation": "Add", "MatchCriteria": "name(Hangup)", "Filter": "x"}
    )
    assert pattern_without_method["Response"] == "Error"  # manager.c: method(none) with a pattern
    await server.emit(CALLER)
    await server.emit(channel_event(AGENT, "Newstate"))
    await server.emit(AGENT)
    assert (await raw.recv())["Channel"] == "PJSIP/101-00000011"
    await raw.nothing_within()


# -- serving calls --------------------------------------------------------------------------------------


async def test_core_show_channels_follows_emitted_events(server: FakeAmiServer) -> None:
    async with panoramisk_client(server) as (manager, _events):
        await server.emit(CALLER)
        await server.emit(AGENT)
        await server.emit(channel_event(AGENT, "Newexten", Application="Dial", AppData="PJSIP/102,30"))
        # bridged with the older call: Asterisk rewrites the agent's Linkedid
        await server.emit(
            channel_event(
                AGENT,
                "BridgeEnter",
                ChannelState="6",
                ChannelStateDesc="Up",
                Linkedid="1710140185.100",
                BridgeUniqueid="b-1",
            )
        )
        listing = await asyncio.wait_for(manager.send_action({"Action": "CoreShowChannels"}), TIMEOUT)
        head, *rows, tail = listing
        assert (head.Response, head.EventList, head.Message) == ("Success", "start", "Channels will follow")
        assert [r.Channel for r in rows] == ["PJSIP/sipnet-00000010", "PJSIP/101-00000011"]
        agent = rows[1]
        assert (agent.Linkedid, agent.ChannelState, agent.ChannelStateDesc) == ("1710140185.100", "6", "Up")
        assert (agent.Application, agent.ApplicationData, agent.BridgeId) == ("Dial", "PJSIP/102,30", "b-1")
        assert agent.Duration == "00:00:00" and agent.ActionID == head.ActionID
        assert (tail.Event, tail.EventList, tail.ListItems) == ("CoreShowChannelsComplete", "Complete", "2")

        await server.emit(channel_event(CALLER, "Hangup", Cause="16", **{"Cause-txt": "Normal Clearing"}))
        listing = await asyncio.wait_for(manager.send_action({"Action": "CoreShowChannels"}), TIMEOUT)
        assert [m.Channel for m in listing if m.Event == "CoreShowChannel"] == ["PJSIP/101-00000011"]
        assert listing[-1].ListItems == "1"


async def test_pjsip_show_endpoints(server: FakeAmiServer, raw: RawClient) -> None:
    await raw.login(Events="off")
    empty = await raw.request({"Action": "PJSIPShowEndpoints"})
    assert (empty["Response"], empty["Message"]) == ("Error", "No endpoints found")
    server.endpoints = [
        Endpoint("101", contacts="101/sip:101@192.0.2.10:5060,"),
        Endpoint("102", device_state="Unavailable"),
    ]
    await server.emit(AGENT)
    await raw.send({"Action": "PJSIPShowEndpoints", "ActionID": "ep"})
    head, first, second, tail = await raw.recv_until("EndpointListComplete")
    assert (head["EventList"], head["ActionID"]) == ("start", "ep")
    assert first == {
        "Event": "EndpointList",
        "ActionID": "ep",
        "ObjectType": "endpoint",
        "ObjectName": "101",
        "Transport": "transport-udp",
        "Aor": "101",
        "Auths": "101",
        "OutboundAuths": "",
        "Contacts": "101/sip:101@192.0.2.10:5060,",
        "DeviceState": "Not in use",
        "ActiveChannels": "1",
    }
    assert (second["DeviceState"], second["ActiveChannels"]) == ("Unavailable", "0")
    assert tail == {"Event": "EndpointListComplete", "ActionID": "ep", "EventList": "Complete", "ListItems": "2"}


async def test_command_core_show_version(server: FakeAmiServer) -> None:
    async with panoramisk_client(server) as (manager, _events):
        answer = await asyncio.wait_for(manager.send_command("core show version"), TIMEOUT)
        assert (answer.Response, answer.Message) == ("Success", "Command output follows")
        assert answer.Output.startswith("Asterisk 22.")
        unknown = await asyncio.wait_for(manager.send_command("core show nonsense"), TIMEOUT)
        assert unknown.Response == "Error" and unknown.Output.startswith("No such command 'core show nonsense'")


ORIGINATE: dict[str, Any] = {  # panoramisk sends a list value as repeated lines
    "Action": "Originate",
    "Channel": "PJSIP/101",
    "Context": "from-internal",
    "Exten": "79261234567",
    "Priority": "1",
    "CallerID": '"79261234567" <79261234567>',
    "Timeout": "30000",
    "Variable": ["B24_CALL_ID=externalCall.1", "X=1"],
    "ChannelId": "1710150000.900",
}


async def test_async_originate_resolves_to_queued_plus_originate_response(server: FakeAmiServer) -> None:
    seen: list[AmiMessage] = []

    async def answer_with_events(action: AmiMessage) -> OriginateOutcome:
        seen.append(action)
        await server.emit(
            channel_event(AGENT, "Newchannel", Channel="PJSIP/101-00000050", Uniqueid=action["ChannelId"])
        )
        return OriginateOutcome(channel="PJSIP/101-00000050", delay=0.01)

    server.on_originate = answer_with_events
    async with panoramisk_client(server) as (manager, events):
        queued, result = await asyncio.wait_for(manager.send_action({**ORIGINATE, "Async": "true"}), TIMEOUT)
        assert (queued.Response, queued.Message) == ("Success", "Originate successfully queued")
        assert result.Event == "OriginateResponse" and result.ActionID == queued.ActionID
        assert (result.Response, result.Reason, result.Channel) == ("Success", "4", "PJSIP/101-00000050")
        assert (result.Uniqueid, result.CallerIDNum, result.CallerIDName) == (
            "1710150000.900",
            "79261234567",
            "79261234567",
        )
        assert (result.Context, result.Exten) == ("from-internal", "79261234567")
        assert seen[0]["Variable"] == "B24_CALL_ID=externalCall.1\nX=1"  # repeated keys kept in order
        assert any(e.Event == "Newchannel" for e in events)
        assert server.channels.get("1710150000.900") is not None


async def test_originate_failures_async_and_sync(server: FakeAmiServer) -> None:
    async def busy(_action: AmiMessage) -> OriginateOutcome:
        return OriginateOutcome(reason=REASON_BUSY)

    server.on_originate = busy
    async with panoramisk_client(server) as (manager, _events):
        queued, result = await asyncio.wait_for(manager.send_action({**ORIGINATE, "Async": "true"}), TIMEOUT)
        assert queued.Response == "Success"
        assert (result.Response, result.Reason, result.Channel) == ("Failure", "5", "PJSIP/101")
        assert result.Uniqueid == "1710150000.900"  # the requested ChannelId, as fast_originate reports it
        sync = await asyncio.wait_for(manager.send_action({**ORIGINATE, "Async": "false"}), TIMEOUT)
        assert (sync.Response, sync.Message) == ("Error", "Originate failed")
        no_channel = await asyncio.wait_for(manager.send_action({"Action": "Originate", "Async": "true"}), TIMEOUT)
        assert (no_channel.Response, no_channel.Message) == ("Error", "Channel not specified")
    server.on_originate = None
    client = await RawClient.connect(server)
    try:
        await client.login(Events="off")
        sync_ok = await client.request({**ORIGINATE, "Variable": "A=1", "ActionID": "s", "Async": "no"})
        assert sync_ok == {"Response": "Success", "ActionID": "s", "Message": "Originate successfully queued"}
        await client.nothing_within(0.05)  # no OriginateResponse for a synchronous originate
    finally:
        await client.close()


async def test_play_skips_responses_and_honours_speed(server: FakeAmiServer, raw: RawClient) -> None:
    await raw.login(Events="off")
    await raw.request({"Action": "Events", "EventMask": "call"})
    trace = [
        {**CALLER, "_ts": "1000.0"},
        {"Response": "Success", "ActionID": "old/1", "Message": "Channels will follow", "_ts": "1000.1"},
        {"Event": "CoreShowChannel", "ActionID": "old/1", "Channel": "PJSIP/x-1", "_ts": "1000.1"},
        {**channel_event(CALLER, "Hangup", Cause="16"), "_ts": "1000.2"},
    ]
    started = time.monotonic()
    assert await server.play(trace, speed=2.0) == 2
    assert 0.09 <= time.monotonic() - started < 0.5  # 0.2 s of recording at double speed
    first, second = await raw.recv(), await raw.recv()
    assert (first["Event"], second["Event"]) == ("Newchannel", "Hangup")
    assert "_ts" not in first and "Privilege" in second
    assert len(server.channels) == 0


# -- faults ---------------------------------------------------------------------------------------------


async def test_drop_connections_closes_abruptly_and_accepts_reconnects(server: FakeAmiServer) -> None:
    async with panoramisk_client(server, reconnect_timeout=0) as (manager, _events):
        await server.drop_connections()
        assert server.connections == 0
        await server.wait_until(lambda: sum(a.success for a in server.logins) == 2)  # panoramisk came back
        assert server.connections == 1
        pong = await asyncio.wait_for(manager.send_action({"Action": "Ping"}), TIMEOUT)
        assert pong.Ping == "Pong"


async def test_half_open_keeps_tcp_but_answers_nothing(server: FakeAmiServer, raw: RawClient) -> None:
    await raw.login(Events="call")
    server.answer_pings = False
    await raw.send({"Action": "Ping", "ActionID": "p"})
    await server.emit(CALLER)
    await raw.nothing_within(0.2)
    assert server.connections == 1 and not await raw.eof_within(0.01)
    assert len(server.channels) == 1  # the PBX side still moves on
    server.answer_pings = True
    assert (await raw.request({"Action": "Ping", "ActionID": "p2"}))["ActionID"] == "p2"


async def test_shutdown_event_then_close(server: FakeAmiServer, raw: RawClient) -> None:
    await raw.login(Events="system")
    assert (await raw.recv())["Event"] == "FullyBooted"
    await server.emit(CALLER)
    await server.send_shutdown()
    shutdown = await raw.recv()
    assert shutdown == {
        "Event": "Shutdown",
        "Privilege": "system,all",
        "Shutdown": "Uncleanly",
        "Restart": "False",
    }
    assert await raw.eof_within()


async def test_split_writes_are_reassembled_by_panoramisk(server: FakeAmiServer) -> None:
    server.split_writes = True
    async with panoramisk_client(server) as (manager, events):
        await server.emit(CALLER)
        await server.emit(channel_event(CALLER, "Hangup", Cause="16"))
        listing = await asyncio.wait_for(manager.send_action({"Action": "CoreShowChannels"}), TIMEOUT)
        assert listing[-1].ListItems == "0"
        assert [e.Event for e in events] == ["FullyBooted", "Newchannel", "Hangup"]
        assert events[1].CallerIDNum == "79261234567"


class ChunkRecorder(asyncio.Protocol):
    """Keeps every ``data_received`` piece, as a protocol-based client (panoramisk, the agent) sees them."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.framer = AmiFramer()
        self.messages: list[AmiMessage] = []

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.messages.extend(self.framer.feed(data))


NAME = "Иванова-Петрова Анна Сергеевна"  # 2-byte characters: some piece boundary falls inside one


async def test_split_writes_really_fragment_and_our_framer_keeps_utf8(server: FakeAmiServer) -> None:
    transport, recorder = await asyncio.get_running_loop().create_connection(ChunkRecorder, "127.0.0.1", server.port)
    try:
        transport.write(format_action({"Action": "Login", "Username": "edge", "Secret": SECRET, "Events": "call"}))
        await server.wait_until(lambda: bool(server.logins))
        server.split_writes = True
        await server.emit({**CALLER, "CallerIDName": NAME})
        await server.wait_until(lambda: len(recorder.messages) == 2)
        assert recorder.messages[1]["CallerIDName"] == NAME
        assert len(recorder.chunks) > 10  # ~400 bytes arrived in pieces of at most 16
        assert any(_cuts_a_character(chunk) for chunk in recorder.chunks)  # the case panoramisk 1.4 mangles
    finally:
        transport.close()


async def test_stock_panoramisk_loses_characters_cut_across_reads(server: FakeAmiServer) -> None:
    """Documents a client limit: panoramisk 1.4 decodes each read on its own with errors="ignore"."""
    async with panoramisk_client(server) as (_manager, events):
        server.split_writes = True
        await server.emit({**CALLER, "CallerIDName": NAME})
        await server.wait_until(lambda: len(events) == 2)
        mangled = events[1].CallerIDName
        assert mangled != NAME and len(mangled) < len(NAME)


def _cuts_a_character(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


async def test_lf_only_framing(server: FakeAmiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.lf_only = True
    raw = await RawClient.connect(server)
    assert await asyncio.wait_for(raw.reader.readuntil(b"\n"), TIMEOUT) == b"Asterisk Call Manager/9.0.0\n"
    await raw.send({"Action": "Login", "Username": "edge", "Secret": SECRET, "Events": "off"})
    data = await asyncio.wait_for(raw.reader.readuntil(b"\n\n"), TIMEOUT)
    assert b"\r" not in data and b"Message: Authentication accepted\n" in data
    await raw.close()
    # panoramisk splits on its module-level EOL: configured for "\n" it parses an LF-only stream
    monkeypatch.setattr(panoramisk.utils, "EOL", "\n")
    async with panoramisk_client(server) as (manager, events):
        pong = await asyncio.wait_for(manager.send_action({"Action": "Ping"}), TIMEOUT)
        assert pong.Ping == "Pong"
        await server.emit(CALLER)
        await server.wait_until(lambda: len(events) == 2)
        assert events[1].Uniqueid == "1710140185.100"


async def test_stock_panoramisk_never_sees_an_lf_only_login(server: FakeAmiServer) -> None:
    """Documents a client limit: panoramisk 1.4 only splits on CRLF, so LF-only framing stalls it."""
    server.lf_only = True
    with pytest.raises(TimeoutError):
        async with panoramisk_client(server):
            pass
    assert server.logins[0].success  # the server did accept it


async def test_send_raw_garbage_does_not_break_the_session(server: FakeAmiServer, raw: RawClient) -> None:
    await raw.login(Events="off")
    await server.send_raw(b"\x00\xffgarbage without colon\r\n\r\n")
    pong = await raw.request({"Action": "Ping", "ActionID": "after"})
    assert pong["ActionID"] == "after"
    assert raw.framer.malformed_lines == 1


# -- CLI ------------------------------------------------------------------------------------------------


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "call.jsonl"
    messages = (CALLER, channel_event(CALLER, "Hangup", Cause="16"))
    path.write_text("".join(json.dumps(m) + "\n" for m in messages), encoding="utf-8")
    return path


async def test_cli_serves_a_trace_after_login(trace: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.ami_server",
        "--port",
        "0",
        "--user",
        "demo:demo-secret",
        "--trace",
        str(trace),
        cwd=REPO_ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 5)
        port = int(line.decode().split("listening on 127.0.0.1:")[1].split()[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = RawClient(reader, writer)
        try:
            await client.login("demo", "demo-secret", Events="call")
            assert [(await client.recv())["Event"] for _ in range(2)] == ["Newchannel", "Hangup"]
        finally:
            await client.close()
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 5) == 0
