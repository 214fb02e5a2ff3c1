"""The cloud's side of recordings, on moto (DynamoDB, S3) and the real license server in-process: the URL an agent
gets, what a result must prove, tenant isolation, retention; through ``$default`` as the agent speaks it."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cloud_builders import CID, ended, started
from licensing_builders import PUBLIC_KEYS_ENV, trial_from_now
from pydantic import BaseModel

import cloud.app
from cloud.agents import connections, tokens
from cloud.calls.store import record_event
from cloud.crm.pipeline import crm_status
from cloud.crm.settings import CrmSettings, RecordingSettings, save_settings
from cloud.link.dispatch import handle_agent_message
from cloud.recordings.bucket import LIFECYCLE, create_bucket
from cloud.recordings.retention import expire_recordings
from cloud.recordings.store import get_recording, object_key
from cloud.runtime import Runtime
from wire_protocol.messages import (
    RecordingAck,
    RecordingReady,
    RecordingResult,
    UploadRecording,
    encode,
)

pytest_plugins = ["cloud_testkit"]

TENANT = "portal-a"
CALL = "pbx-1795686710.98"
BODY = b"RIFF" + bytes(range(256)) * 40


@pytest.fixture
def rt(rt: Runtime) -> Iterator[Runtime]:
    runtime = Runtime(dataclasses.replace(rt.settings, license_public_keys=PUBLIC_KEYS_ENV))
    cloud.app.use_runtime(runtime)
    create_bucket(runtime.s3, runtime.settings.bucket, runtime.settings.region)
    yield runtime


@pytest.fixture
def licensed(rt: Runtime) -> Iterator[None]:
    """portal-a on its trial (every feature, recordings included), as after its install."""
    double = trial_from_now(rt, TENANT)
    yield
    double.close()


def recorded_call(rt: Runtime, agent_id: str, tenant: str = TENANT, call_id: str = CALL) -> None:
    record_event(rt, tenant, agent_id, 1, started(call_id))
    end = ended(call_id, seq=2)
    summary = end.summary.model_copy(update={"recording": f"/var/spool/asterisk/monitor/{call_id}.wav"})
    record_event(rt, tenant, agent_id, 2, end.model_copy(update={"summary": summary}))


def say(message: BaseModel, connection: str = CID) -> list[BaseModel]:
    """What ``$default`` answers the agent on ``connection``."""
    return handle_agent_message(cloud.app.runtime(), connection, encode(message)).replies


def ask(size: int = len(BODY)) -> UploadRecording:
    (reply,) = say(RecordingReady(call_id=CALL, size=size))
    assert isinstance(reply, UploadRecording)
    return reply


def test_a_finished_call_gets_a_presigned_put_under_its_tenant(rt: Runtime, agent_id: str, licensed: None) -> None:
    recorded_call(rt, agent_id)
    order = ask()
    assert order.url is not None and order.key == f"{TENANT}/{agent_id}/{CALL}/recording"
    assert order.format == "mp3"  # the default setting
    query = urlsplit(order.url).query
    assert "X-Amz-Signature=" in query and "X-Amz-Expires=3600" in query  # SigV4, one hour
    assert get_recording(rt, TENANT, agent_id, CALL).state == "requested"  # type: ignore[union-attr]
    assert len(encode(order)) < 4000  # far below the 32 KB frame


def test_upload_then_result_records_it_and_asks_the_crm(rt: Runtime, agent_id: str, licensed: None) -> None:
    recorded_call(rt, agent_id)
    order = ask()
    assert order.url is not None
    assert requests.put(order.url, data=BODY, timeout=10).status_code == 200
    result = RecordingResult(
        call_id=CALL, ok=True, key=order.key, format="wav", size=len(BODY), sha256=hashlib.sha256(BODY).hexdigest(),
        note="MP3 wanted but no lame or ffmpeg on the agent's PATH: uploaded WAV",
    )  # fmt: skip
    outcome = handle_agent_message(rt, CID, encode(result))
    assert outcome.replies == [RecordingAck(call_id=CALL)]
    assert outcome.crm_calls == [CALL]  # processed after the reply
    item = get_recording(rt, TENANT, agent_id, CALL)
    assert item is not None and (item.state, item.format, item.size) == ("uploaded", "wav", len(BODY))
    assert item.filename == f"{CALL}.wav" and "no lame" in item.note
    crm = crm_status(rt, TENANT, agent_id, CALL)
    assert crm is not None and crm["wanted"] >= 1
    assert crm["recording"]["state"] == "uploaded" and "no lame" in crm["recording"]["note"]  # said on the call
    # the same result again (its ack was lost): acknowledged, nothing changes, no new CRM work
    again = handle_agent_message(rt, CID, encode(result))
    assert again.replies == [RecordingAck(call_id=CALL)] and again.crm_calls == []
    # and a new request for an uploaded recording is declined for good
    assert (ask().url, ask().reason, ask().retry) == (None, "already_uploaded", False)


@pytest.mark.parametrize(
    ("claim", "why"),
    [
        ({"size": len(BODY) + 1}, "bytes"),
        ({"key": "portal-b/ag_x/pbx-1/recording"}, "did not ask for"),
    ],
)
def test_a_result_s3_does_not_confirm_is_recorded_as_failed(
    rt: Runtime, agent_id: str, licensed: None, claim: dict[str, object], why: str
) -> None:
    recorded_call(rt, agent_id)
    order = ask()
    assert order.url is not None
    requests.put(order.url, data=BODY, timeout=10)
    fields: dict[str, object] = {"call_id": CALL, "ok": True, "key": order.key, "format": "wav", "size": len(BODY)}
    result = RecordingResult.model_validate(fields | claim)
    (reply,) = say(result)
    assert reply == RecordingAck(call_id=CALL)
    item = get_recording(rt, TENANT, agent_id, CALL)
    assert item is not None and item.state == "failed" and why in item.note


def test_a_result_without_an_upload_is_refused(rt: Runtime, agent_id: str, licensed: None) -> None:
    recorded_call(rt, agent_id)
    order = ask()
    say(RecordingResult(call_id=CALL, ok=True, key=order.key, format="mp3", size=10))
    item = get_recording(rt, TENANT, agent_id, CALL)
    assert item is not None and (item.state, item.error) == ("failed", "unverified")


def test_a_missing_file_is_recorded_and_the_crm_is_told(rt: Runtime, agent_id: str, licensed: None) -> None:
    recorded_call(rt, agent_id)
    ask()
    outcome = handle_agent_message(
        rt, CID, encode(RecordingResult(call_id=CALL, ok=False, error="missing", note="not found at /x.wav"))
    )
    assert outcome.replies == [RecordingAck(call_id=CALL)] and outcome.crm_calls == [CALL]
    item = get_recording(rt, TENANT, agent_id, CALL)
    assert item is not None and (item.state, item.error, item.note) == ("failed", "missing", "not found at /x.wav")
    crm = crm_status(rt, TENANT, agent_id, CALL)
    assert crm is not None and crm["recording"]["error"] == "missing"


def test_no_url_while_the_call_has_not_ended_here_yet(rt: Runtime, agent_id: str, licensed: None) -> None:
    record_event(rt, TENANT, agent_id, 1, started(CALL))
    order = ask()
    assert (order.url, order.retry) == (None, True)


def test_no_url_when_recordings_are_off_or_not_licensed(rt: Runtime, agent_id: str) -> None:
    recorded_call(rt, agent_id)
    assert (ask().url, ask().reason, ask().retry) == (None, "not_licensed", False)  # never licensed: free tier
    save_settings(rt, TENANT, CrmSettings(recordings=RecordingSettings(enabled=False)))
    assert ask().reason == "disabled"
    assert get_recording(rt, TENANT, agent_id, CALL) is None


def test_another_tenants_agent_cannot_reach_a_call_or_its_object(rt: Runtime, agent_id: str, licensed: None) -> None:
    recorded_call(rt, agent_id)
    other, _ = tokens.issue_token(rt, "portal-b", "Other office")
    connections.record(rt, "portal-b", other, "conn-b")
    (reply,) = say(RecordingReady(call_id=CALL, size=1), connection="conn-b")
    assert isinstance(reply, UploadRecording) and reply.url is None and reply.retry  # no such call for portal-b
    assert object_key("portal-b", other, CALL).startswith("portal-b/")


def test_retention_deletes_the_object_after_the_tenants_days(rt: Runtime, agent_id: str, licensed: None) -> None:
    save_settings(rt, TENANT, CrmSettings(recordings=RecordingSettings(retention_days=3)))
    recorded_call(rt, agent_id)
    order = ask()
    assert order.url is not None
    requests.put(order.url, data=BODY, timeout=10)
    say(RecordingResult(call_id=CALL, ok=True, key=order.key, format="wav", size=len(BODY)))
    item = get_recording(rt, TENANT, agent_id, CALL)
    assert item is not None and item.uploaded_at is not None and item.expires_on is not None
    uploaded = datetime.fromisoformat(item.uploaded_at)
    assert datetime.fromisoformat(item.expires_on) - uploaded == timedelta(days=3)
    assert expire_recordings(rt, uploaded + timedelta(days=2, hours=23)) == 0
    assert rt.s3.head_object(Bucket=rt.settings.bucket, Key=order.key)["ContentLength"] == len(BODY)
    assert expire_recordings(rt, uploaded + timedelta(days=3, minutes=1)) == 1
    with pytest.raises(Exception, match=r"404|Not Found"):
        rt.s3.head_object(Bucket=rt.settings.bucket, Key=order.key)
    assert get_recording(rt, TENANT, agent_id, CALL).state == "expired"  # type: ignore[union-attr]
    assert expire_recordings(rt, uploaded + timedelta(days=30)) == 0  # once


def test_the_bucket_is_private_with_a_safety_net_lifecycle(rt: Runtime) -> None:
    bucket = rt.settings.bucket
    block = rt.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rules = rt.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rules[0]["Expiration"]["Days"] == LIFECYCLE["Rules"][0]["Expiration"]["Days"] > 3650
    assert create_bucket(rt.s3, bucket, rt.settings.region) is False  # idempotent


def test_the_hourly_schedule_deletes_what_retention_ended(rt: Runtime, agent_id: str) -> None:
    from chalice.test import Client
    from cloud_builders import PROJECT_DIR

    from cloud.recordings.store import RecordingItem, put_recording

    key = object_key(TENANT, agent_id, CALL)
    rt.s3.put_object(Bucket=rt.settings.bucket, Key=key, Body=BODY)
    past = "2026-01-01T00:00:00+00:00"
    put_recording(rt, RecordingItem(TENANT, agent_id, CALL, "uploaded", key, "mp3", uploaded_at=past, expires_on=past))
    with Client(cloud.app.app, stage_name="dev", project_dir=PROJECT_DIR) as client:
        client.lambda_.invoke(
            "expire_recordings",
            client.events.generate_cw_event(
                source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]
            ),
        )
    assert rt.s3.list_objects_v2(Bucket=rt.settings.bucket).get("KeyCount") == 0
    assert get_recording(rt, TENANT, agent_id, CALL).state == "expired"  # type: ignore[union-attr]


# -- integrity: the SHA-256 the agent announced ---------------------------------------------------------------

SHA = hashlib.sha256(BODY).hexdigest()
CHECKSUM = base64.b64encode(hashlib.sha256(BODY).digest()).decode()


def ask_with_sha256(sha256: str = SHA) -> UploadRecording:
    (reply,) = say(RecordingReady(call_id=CALL, size=len(BODY), sha256=sha256, format="wav"))
    assert isinstance(reply, UploadRecording) and reply.url is not None
    return reply


def uploaded(order: UploadRecording, sha256: str = SHA) -> RecordingResult:
    return RecordingResult(call_id=CALL, ok=True, key=order.key, format="wav", size=len(BODY), sha256=sha256)


def test_the_url_is_signed_with_the_announced_sha256_and_a_matching_object_is_taken(
    rt: Runtime, agent_id: str, licensed: None
) -> None:
    recorded_call(rt, agent_id)
    order = ask_with_sha256()
    assert order.headers == {"x-amz-checksum-sha256": CHECKSUM}
    assert "x-amz-checksum-sha256" in parse_qs(urlsplit(order.url or "").query)["X-Amz-SignedHeaders"][0]
    assert get_recording(rt, TENANT, agent_id, CALL).sha256 == SHA  # type: ignore[union-attr]
    assert requests.put(order.url or "", data=BODY, headers=order.headers, timeout=10).status_code == 200
    outcome = handle_agent_message(rt, CID, encode(uploaded(order)))
    assert outcome.replies == [RecordingAck(call_id=CALL)] and outcome.crm_calls == [CALL]
    item = get_recording(rt, TENANT, agent_id, CALL)
    assert item is not None and (item.state, item.sha256) == ("uploaded", SHA)


def test_a_corrupted_object_is_deleted_never_attached_and_the_agent_uploads_again(
    rt: Runtime, agent_id: str, licensed: None
) -> None:
    recorded_call(rt, agent_id)
    order = ask_with_sha256()
    corrupted = bytes([BODY[0] ^ 0xFF]) + BODY[1:]  # same size: only the hash tells (moto keeps no checksum here)
    requests.put(order.url or "", data=corrupted, headers=order.headers, timeout=10)
    outcome = handle_agent_message(rt, CID, encode(uploaded(order)))
    (ack,) = outcome.replies
    assert isinstance(ack, RecordingAck) and ack.retry and "SHA-256" in (ack.reason or "")
    assert outcome.crm_calls == []  # nothing for the CRM to attach
    with pytest.raises(Exception, match=r"404|Not Found"):
        rt.s3.head_object(Bucket=rt.settings.bucket, Key=order.key)
    item = get_recording(rt, TENANT, agent_id, CALL)
    assert item is not None and item.state == "requested" and "did not verify" in item.note
    again = ask_with_sha256()  # the agent's next attempt
    requests.put(again.url or "", data=BODY, headers=again.headers, timeout=10)
    assert say(uploaded(again)) == [RecordingAck(call_id=CALL)]
    assert get_recording(rt, TENANT, agent_id, CALL).state == "uploaded"  # type: ignore[union-attr]


def test_a_checksum_s3_keeps_is_compared_and_another_sha256_reported_is_refused(
    rt: Runtime, agent_id: str, licensed: None
) -> None:
    recorded_call(rt, agent_id)
    order = ask_with_sha256()
    other = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    # moto keeps a claimed checksum unchecked when the algorithm is named: S3 "kept" another one
    rt.s3.put_object(
        Bucket=rt.settings.bucket, Key=order.key, Body=BODY, ChecksumAlgorithm="SHA256", ChecksumSHA256=other
    )
    (ack,) = say(uploaded(order))
    assert isinstance(ack, RecordingAck) and ack.retry and "S3 keeps another" in (ack.reason or "")
    order = ask_with_sha256()
    rt.s3.put_object(Bucket=rt.settings.bucket, Key=order.key, Body=BODY, ChecksumAlgorithm="SHA256")
    (ack,) = say(uploaded(order, sha256=hashlib.sha256(b"x").hexdigest()))
    assert isinstance(ack, RecordingAck) and ack.retry and "another SHA-256 than it announced" in (ack.reason or "")
    order = ask_with_sha256()  # (the refused object was deleted)
    rt.s3.put_object(Bucket=rt.settings.bucket, Key=order.key, Body=BODY, ChecksumAlgorithm="SHA256")
    (ack,) = say(uploaded(order))
    assert ack == RecordingAck(call_id=CALL)
    assert get_recording(rt, TENANT, agent_id, CALL).state == "uploaded"  # type: ignore[union-attr]
