"""The actions the fake answers, with manager.c's authority checks and exact response texts (Asterisk 22).

``dispatch`` follows ``process_message()``: an empty ``Action`` is an error; before login only Login, Logoff
and Challenge run (anything else: ``Permission denied``); an unregistered action gets the ``Invalid/unknown
command`` error; a registered one runs only if the user's write classes share a class with its authority.
A handler returns ``False`` when the connection must close after its answer (Logoff, failed Login).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from edge_agent.ami.framing import AmiMessage
from sandbox.ami_server.filters import FilterError, parse_filter
from sandbox.ami_server.messages import header, list_complete, response
from sandbox.ami_server.originate import REASON_FAILED, OriginateOutcome, originate_response
from sandbox.ami_server.privileges import parse_event_mask

if TYPE_CHECKING:
    from sandbox.ami_server.server import FakeAmiServer
    from sandbox.ami_server.session import AmiSession

__all__ = ["ACTIONS", "ActionSpec", "dispatch"]

log = logging.getLogger(__name__)

Handler = Callable[["FakeAmiServer", "AmiSession", AmiMessage], Awaitable[bool]]

_TRUE: Final = frozenset({"yes", "true", "y", "t", "1", "on"})  # ast_true()
_PRE_LOGIN: Final = frozenset({"login", "logoff", "challenge"})


@dataclass(frozen=True)
class ActionSpec:
    handler: Handler
    #: Write classes of which the user needs at least one; empty = any logged-in user.
    authority: frozenset[str] = frozenset()


async def dispatch(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    name = header(action, "Action").strip()
    if not name:
        await session.send(response(action, "Error", "Missing action in request"))
        return True
    if not session.authenticated and name.lower() not in _PRE_LOGIN:
        await session.send(response(action, "Error", "Permission denied"))
        return True
    spec = ACTIONS.get(name.lower())
    if spec is None:
        message = f"Invalid/unknown command: {name}. Use Action: ListCommands to show available commands."
        await session.send(response(action, "Error", message))
        return True
    if spec.authority and not spec.authority & session.write:
        await session.send(response(action, "Error", "Permission denied"))
        return True
    return await spec.handler(server, session, action)


async def _login(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    if session.authenticated:
        await session.send(response(action, "Success", "Already authenticated"))
        return True
    username = header(action, "Username")
    user = server.users.get(username) if username else None
    md5 = header(action, "AuthType").lower() == "md5"
    if user is None:
        ok = False
    elif md5:
        key = header(action, "Key")
        expected = hashlib.md5((session.challenge + user.secret).encode()).hexdigest()
        ok = bool(key and session.challenge) and key == expected
    else:
        ok = header(action, "Secret") == user.secret
    server.record_login(session, username, ok, "md5" if md5 else "plain")
    if not ok or user is None:
        if server.auth_failure_delay:
            await asyncio.sleep(server.auth_failure_delay)  # manager.c sleeps 1 s before answering
        await session.send(response(action, "Error", "Authentication failed"))
        return False
    session.authenticated = True
    session.username = username
    session.read, session.write = user.read, user.write
    mask = parse_event_mask(header(action, "Events"))
    session.send_events = user.read if mask is None else user.read & mask
    await session.send(response(action, "Success", "Authentication accepted"))
    if "system" in session.send_events and server.answer_pings:
        uptime = str(int(time.monotonic() - server.started_at))
        await session.send(
            {
                "Event": "FullyBooted",
                "Privilege": "system,all",
                "Uptime": uptime,
                "LastReload": uptime,
                "Status": "Fully Booted",
            }
        )
    return True


async def _challenge(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    if header(action, "AuthType").lower() != "md5":
        await session.send(response(action, "Error", "Must specify AuthType"))
        return True
    if not session.challenge:
        session.challenge = str(random.randrange(1, 2**31))
    await session.send(response(action, "Success", Challenge=session.challenge))
    return True


async def _logoff(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    await session.send(response(action, "Goodbye", "Thanks for all the fish."))
    return False


async def _ping(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    if server.answer_pings:
        now = time.time()
        await session.send(response(action, "Success", Ping="Pong", Timestamp=f"{now:.6f}"))
    return True


async def _events(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    mask = parse_event_mask(header(action, "EventMask"))
    if mask is None:
        await session.send(response(action, "Error", "Invalid event mask"))
        return True
    session.send_events = session.read & mask
    await session.send(response(action, "Success", Events="On" if mask else "Off"))
    return True


async def _filter(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    if header(action, "Operation").lower() != "add":
        await session.send(response(action, "Error", "Unknown operation"))
        return True
    try:
        event_filter = parse_filter(header(action, "Filter"), header(action, "MatchCriteria"))
    except FilterError as exc:
        await session.send(response(action, "Error", str(exc)))
        return True
    (session.exclude_filters if event_filter.exclude else session.include_filters).append(event_filter)
    await session.send(response(action, "Success", "Success"))
    return True


async def _core_show_channels(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    await session.send(response(action, "Success", "Channels will follow", event_list="start"))
    channels = server.channels.snapshot()
    action_id = header(action, "ActionID")
    for channel in channels:
        event: AmiMessage = {"Event": "CoreShowChannel"}
        if action_id:
            event["ActionID"] = action_id
        event.update(channel.block)
        event.update(
            Application=channel.application,
            ApplicationData=channel.application_data,
            Duration=channel.duration(),
            BridgeId=channel.bridge_id,
        )
        await session.send(event)
    await session.send(list_complete(action, "CoreShowChannelsComplete", len(channels)))
    return True


async def _core_settings(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    """``action_coresettings()``: the running Asterisk's version and limits (no Message header)."""
    await session.send(
        response(
            action,
            "Success",
            AMIversion=server.ami_version,
            AsteriskVersion=server.asterisk_version,
            SystemName="pbx",
            CoreMaxCalls="0",
            CoreMaxLoadAvg="0.000000",
            CoreRunUser="",
            CoreRunGroup="",
            CoreMaxFilehandles="0",
            CoreRealTimeEnabled="No",
            CoreCDRenabled="Yes",
            CoreHTTPenabled="No",
            SoundsSearchCustomDir="No",
        )
    )
    return True


async def _pjsip_show_endpoints(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    endpoints = list(server.endpoints)
    if not endpoints:
        await session.send(response(action, "Error", "No endpoints found"))
        return True
    message = "A listing of Endpoints follows, presented as EndpointList events"
    await session.send(response(action, "Success", message, event_list="start"))
    for endpoint in endpoints:
        await session.send(endpoint.event(header(action, "ActionID"), server.channels))
    await session.send(list_complete(action, "EndpointListComplete", len(endpoints)))
    return True


async def _command(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    command = " ".join(header(action, "Command").split())
    if not command:
        await session.send(response(action, "Error", "No command provided"))
        return True
    output = server.cli_outputs.get(command)
    if output is None:
        known = [c.split() for c in server.cli_outputs]
        words = command.split()
        best = max((_common_words(words, k) for k in known), default=0)
        hint = " ".join(words[: best or 1])
        text = f"No such command '{command}' (type 'core show help {hint}' for other possible commands)"
        await session.send(response(action, "Error", "Command output follows", Output=text))
        return True
    await session.send(response(action, "Success", "Command output follows", Output=output.rstrip("\n")))
    return True


def _common_words(a: list[str], b: list[str]) -> int:
    count = 0
    for left, right in zip(a, b, strict=False):
        if left != right:
            break
        count += 1
    return count


async def _originate(server: FakeAmiServer, session: AmiSession, action: AmiMessage) -> bool:
    channel = header(action, "Channel")
    priority = header(action, "Priority")
    timeout = header(action, "Timeout")
    error = None
    if not channel:
        error = "Channel not specified"
    elif priority and not priority.lstrip("-").isdigit():
        error = "Invalid priority"  # a label; the fake has no dialplan to resolve it
    elif timeout and not timeout.lstrip("-").isdigit():
        error = "Invalid timeout"
    elif "/" not in channel:
        error = "Invalid channel"
    asynchronous = header(action, "Async").lower() in _TRUE
    if error is None and not asynchronous and not header(action, "Application") and not priority:
        error = "Originate with 'Exten' requires 'Context' and 'Priority'"
    if error is not None:
        await session.send(response(action, "Error", error))
        return True
    if asynchronous:
        await session.send(response(action, "Success", "Originate successfully queued"))
        server.spawn(_report_originate(server, action))
        return True
    outcome = await _outcome(server, action)
    if outcome.succeeded:
        await session.send(response(action, "Success", "Originate successfully queued"))
    else:
        await session.send(response(action, "Error", "Originate failed"))
    return True


async def _outcome(server: FakeAmiServer, action: AmiMessage) -> OriginateOutcome:
    try:
        outcome = await server.on_originate(action) if server.on_originate else OriginateOutcome()
    except Exception:
        log.exception("on_originate hook failed; reporting the originate as failed")
        outcome = OriginateOutcome(reason=REASON_FAILED)
    if outcome.delay:
        await asyncio.sleep(outcome.delay)
    return outcome


async def _report_originate(server: FakeAmiServer, action: AmiMessage) -> None:
    outcome = await _outcome(server, action)
    await server.emit(originate_response(action, outcome))


ACTIONS: Final[dict[str, ActionSpec]] = {
    "login": ActionSpec(_login),
    "challenge": ActionSpec(_challenge),
    "logoff": ActionSpec(_logoff),
    "ping": ActionSpec(_ping),
    "events": ActionSpec(_events),
    "filter": ActionSpec(_filter, frozenset({"system"})),
    "coreshowchannels": ActionSpec(_core_show_channels, frozenset({"system", "reporting"})),
    "pjsipshowendpoints": ActionSpec(_pjsip_show_endpoints, frozenset({"system"})),
    "coresettings": ActionSpec(_core_settings, frozenset({"system", "reporting"})),
    "command": ActionSpec(_command, frozenset({"command"})),
    "originate": ActionSpec(_originate, frozenset({"originate"})),
}
