"""AttachRecord end to end inside the cloud: the recording in (moto) S3 is streamed by the CRM pipeline to the
Bitrix24 emulator's two-step upload over real HTTP, once, after the call's finish."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from test_cloud_crm_pipeline import AGENT, World, events_of, status, store_events, world

from cloud.bitrix24.client import BatchResult, Bitrix24Client, client_for
from cloud.bitrix24.errors import MethodError, PortalUnavailable, RateLimited
from cloud.crm.executor import RestClient
from cloud.crm.pipeline import Entitled, process_call, request_crm, sweep
from cloud.recordings.bucket import create_bucket
from cloud.recordings.store import RecordingItem, object_key, put_recording
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, to_item

__all__ = ["world"]  # the fixture, imported

pytest_plugins = ["cloud_testkit"]

BODY = b"ID3" + bytes(range(256)) * 4000  # about 1 MB: more than one chunk of the stream


def licensed(rt: Runtime, tenant: str, candidates: list[int], now: datetime) -> Entitled:
    return Entitled(recordings=True)


@pytest.fixture
def recorded(world: World) -> World:
    create_bucket(world.rt.s3, world.rt.settings.bucket, world.rt.settings.region)
    world.services.entitled = licensed
    return world


def upload(world: World, call_id: str, state: str = "uploaded") -> str:
    key = object_key(world.tenant, AGENT, call_id)
    if state == "uploaded":
        world.rt.s3.put_object(Bucket=world.rt.settings.bucket, Key=key, Body=BODY)
    put_recording(world.rt, RecordingItem(world.tenant, AGENT, call_id, state, key, "mp3", size=len(BODY)))  # type: ignore[arg-type]
    request_crm(world.rt, world.tenant, AGENT, call_id, world.clock())
    return key


def test_an_uploaded_recording_reaches_the_finished_call_once(recorded: World) -> None:
    world = recorded
    call_id = store_events(world, events_of("inbound_direct_answered"))
    assert process_call(world.rt, world.tenant, AGENT, call_id, world.services).status == "done"
    key = upload(world, call_id)
    result = process_call(world.rt, world.tenant, AGENT, call_id, world.services)
    assert (result.status, result.requests) == ("done", 1)
    (call,) = world.calls()
    assert call.finished and call.record is not None
    assert (call.record.content, call.record.source, call.record.name) == (BODY, "upload", f"{call_id}.mp3")
    assert status(world, call_id)["progress"].record_attached == key
    request_crm(world.rt, world.tenant, AGENT, call_id, world.clock())  # anything else happening to the call
    assert process_call(world.rt, world.tenant, AGENT, call_id, world.services).requests == 0


def test_a_recording_on_its_way_keeps_the_call_waiting_then_lands(recorded: World) -> None:
    world = recorded
    call_id = store_events(world, events_of("inbound_direct_missed"))
    upload(world, call_id, state="requested")
    assert process_call(world.rt, world.tenant, AGENT, call_id, world.services).status == "waiting"
    (call,) = world.calls()
    assert call.finished and call.record is None
    upload(world, call_id)
    assert process_call(world.rt, world.tenant, AGENT, call_id, world.services).status == "done"
    (call,) = world.calls()
    assert call.record is not None and call.record.content == BODY


def test_not_licensed_no_attach(world: World) -> None:
    create_bucket(world.rt.s3, world.rt.settings.bucket, world.rt.settings.region)
    world.services.entitled = lambda rt, tenant, candidates, now: Entitled(recordings=False)
    call_id = store_events(world, events_of("inbound_direct_answered"))
    upload(world, call_id)
    assert process_call(world.rt, world.tenant, AGENT, call_id, world.services).status == "done"
    (call,) = world.calls()
    assert call.finished and call.record is None


def test_the_upload_goes_only_to_the_portals_own_host(recorded: World) -> None:
    client = client_for(recorded.rt, recorded.tenant)
    with pytest.raises(MethodError, match="portal's host"):
        client.upload_file("https://evil.example/upload.json", "file", "a.mp3", [b"x"], 1, "audio/mpeg")


def test_an_upload_cut_off_midway_defers_the_call_and_the_retry_attaches_once(recorded: World) -> None:
    world = recorded
    call_id = store_events(world, events_of("inbound_direct_answered"))
    process_call(world.rt, world.tenant, AGENT, call_id, world.services)
    upload(world, call_id)
    real = world.services.client_for

    class CutClient:
        """The portal's client whose first file upload dies after half the bytes (a dropped connection)."""

        def __init__(self, inner: Bitrix24Client, cuts: list[str]) -> None:
            self.inner, self.cuts = inner, cuts

        def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
            return self.inner.call(method, params)

        def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False) -> BatchResult:
            return self.inner.batch(commands, halt=halt)

        def upload_file(
            self, url: str, field_name: str, filename: str, chunks: Iterable[bytes], size: int, content_type: str
        ) -> Any:
            if not self.cuts:
                self.cuts.append(url)
                next(iter(chunks))
                raise PortalUnavailable("ReadError", maybe_executed=True, method="upload")
            return self.inner.upload_file(url, field_name, filename, chunks, size, content_type)

    cuts: list[str] = []

    def client(rt: Runtime, tenant: str) -> RestClient:
        inner = real(rt, tenant)
        assert isinstance(inner, Bitrix24Client)
        return CutClient(inner, cuts)

    world.services.client_for = client
    result = process_call(world.rt, world.tenant, AGENT, call_id, world.services)
    assert result.status == "deferred" and len(cuts) == 1
    (call,) = world.calls()
    assert call.record is None and status(world, call_id)["progress"].record_attached is None
    world.clock.now += timedelta(minutes=20)
    assert [r.status for r in sweep(world.rt, world.services)] == ["done"]
    (call,) = world.calls()
    assert call.record is not None and call.record.content == BODY and len(world.portal.files) == 1


class FailingUploads:
    """The portal's client whose first ``len(failures)`` file uploads raise the given errors, in order."""

    def __init__(self, inner: Bitrix24Client, failures: list[Exception]) -> None:
        self.inner, self.failures, self.uploads = inner, failures, 0

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.inner.call(method, params)

    def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False) -> BatchResult:
        return self.inner.batch(commands, halt=halt)

    def upload_file(
        self, url: str, field_name: str, filename: str, chunks: Iterable[bytes], size: int, content_type: str
    ) -> Any:
        self.uploads += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.inner.upload_file(url, field_name, filename, chunks, size, content_type)


def with_failing_uploads(world: World, failures: list[Exception]) -> list[FailingUploads]:
    made: list[FailingUploads] = []
    real = world.services.client_for

    def client(rt: Runtime, tenant: str) -> RestClient:
        inner = real(rt, tenant)
        assert isinstance(inner, Bitrix24Client)
        made.append(FailingUploads(inner, failures))
        return made[-1]

    world.services.client_for = client
    return made


def test_an_upload_refused_by_the_rate_limit_is_retried_in_place(recorded: World) -> None:
    world = recorded
    call_id = store_events(world, events_of("inbound_direct_answered"))
    process_call(world.rt, world.tenant, AGENT, call_id, world.services)
    upload(world, call_id)
    # the attachRecord before took the bucket's last slot: the upload right after is refused once
    clients = with_failing_uploads(world, [RateLimited(0.5, method="upload")])
    result = process_call(world.rt, world.tenant, AGENT, call_id, world.services)
    assert result.status == "done" and sum(c.uploads for c in clients) == 2  # the same pass, no deferral
    (call,) = world.calls()
    assert call.record is not None and call.record.content == BODY and len(world.portal.files) == 1


def test_an_upload_failing_after_bitrix24_answered_attach_record_is_not_a_failure_in_a_row(recorded: World) -> None:
    world = recorded
    call_id = store_events(world, events_of("inbound_direct_answered"))
    process_call(world.rt, world.tenant, AGENT, call_id, world.services)
    upload(world, call_id)
    key = to_item({"tenant": world.tenant, "call_key": f"{AGENT}#{call_id}"})
    # earlier passes failed several times in a row (an outage)
    world.rt.dynamodb.update_item(
        TableName=world.rt.tables.crm_calls,
        Key=key,
        UpdateExpression="SET attempts = :n",
        ExpressionAttributeValues=to_item({":n": 7}),
    )
    with_failing_uploads(world, [PortalUnavailable("expired_token", maybe_executed=False, method="upload")])
    assert process_call(world.rt, world.tenant, AGENT, call_id, world.services).status == "deferred"
    item = from_item(world.rt.dynamodb.get_item(TableName=world.rt.tables.crm_calls, Key=key)["Item"])
    # Bitrix24 answered attachRecord in this pass: the backoff starts over (was 2^7 s away)
    assert item["attempts"] == 1
    assert datetime.fromisoformat(item["due_at"]) <= world.clock.now + timedelta(seconds=2)
