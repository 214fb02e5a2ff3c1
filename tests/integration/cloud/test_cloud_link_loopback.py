"""The cloud's link over real sockets: cloud-local (moto server + the local API Gateway) running ``cloud.app``
and an agent-like websocket client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from cloud.agents import connections, tokens
from cloud.calls.store import list_calls, list_events
from cloud.runtime import Runtime
from cloud.settings import Settings
from sandbox.cloud_local import CloudLocal, CloudLocalConfig
from wire_protocol.call_events import CallStarted
from wire_protocol.messages import (
    Ack,
    ErrorMessage,
    Heartbeat,
    Hello,
    SequencedEvent,
    Welcome,
    batch_events,
    decode_cloud_message,
    encode,
)

pytestmark = [pytest.mark.integration]

AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


async def welcomed(ws: ClientConnection) -> Welcome:
    await ws.send(encode(Hello(agent_version="0-test")))
    welcome = decode_cloud_message(await asyncio.wait_for(ws.recv(), 10))
    assert isinstance(welcome, Welcome)
    await asyncio.wait_for(ws.recv(), 10)  # settings
    return welcome


async def test_pipelined_batches_and_a_duplicate_are_stored_once_and_acked_to_the_end() -> None:
    # Messages one at a time: moto server's transactions are not thread-safe (a failed one restores a snapshot
    # of the whole table), so concurrent handling is covered by the unit tests of cloud.link.acks instead.
    config = CloudLocalConfig(table_prefix="it-")
    async with CloudLocal(config) as cloud:
        rt = Runtime(Settings.from_env())
        agent_id, token = await asyncio.to_thread(tokens.issue_token, rt, "acme", "HQ")
        events = [
            SequencedEvent(
                seq=n,
                event=CallStarted(
                    call_id=f"pbx-{n}.1",
                    seq=1,
                    at=AT,
                    direction="inbound",
                    external_number=str(79260000000 + n),
                    line=None,
                    caller_extension=None,
                ),
            )
            for n in range(1, 201)
        ]
        batches = list(batch_events(events, max_bytes=3000, after_seq=0))
        assert len(batches) > 5
        async with connect(cloud.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            assert (await welcomed(ws)).acked_seq == 0
            for batch in [batches[0], *batches]:  # the first one delivered twice
                await ws.send(encode(batch))
            highest = 0
            while highest < 200:
                message = decode_cloud_message(await asyncio.wait_for(ws.recv(), 20))
                assert isinstance(message, Ack), message
                highest = max(highest, message.up_to_seq)
            assert highest == 200
        stored = await asyncio.to_thread(lambda: list(list_events(rt, "acme", agent_id)))
        assert sorted(e["agent_seq"] for e in stored) == list(range(1, 201))
        assert len(await asyncio.to_thread(list_calls, rt, "acme")) == 200
        assert tokens.get_agent(rt, "acme", agent_id).acked_seq == 200


async def test_a_token_revoked_while_connected_is_cut_off_at_the_next_message() -> None:
    async with CloudLocal(CloudLocalConfig(table_prefix="it-")) as cloud:
        rt = Runtime(Settings.from_env())
        agent_id, token = await asyncio.to_thread(tokens.issue_token, rt, "acme", "HQ")
        async with connect(cloud.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await welcomed(ws)
            await asyncio.to_thread(tokens.revoke, rt, "acme", agent_id)
            await ws.send(encode(Heartbeat(sent_at=AT)))
            error = decode_cloud_message(await asyncio.wait_for(ws.recv(), 10))
            assert isinstance(error, ErrorMessage) and error.code == "not_authorized"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert connections.agent_connection(rt, "acme", agent_id) is None
