"""The cloud's side of a recording's upload: hand the agent a pre-signed ``PUT``, then check and record what it
uploaded and let the CRM attach it.

The agent asks (``recording_ready``) once its call ended and the file is complete; the cloud decides whether
the tenant wants it (``recordings.enabled`` in the CRM settings, the ``recordings`` feature in the license),
and where it goes: always the call's own key under the tenant's prefix, chosen here, never by the agent.
A result is trusted only as far as S3 confirms it: the object exists under that key with the size claimed and,
when the agent announced the file's SHA-256 in ``recording_ready``, with that SHA-256 (the URL is signed with it,
so S3 refuses a corrupted body; the cloud checks the object again before the CRM may attach it, and an object that
does not match is deleted and the agent told to upload again).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
from datetime import datetime, timedelta

from cloud.calls.store import get_call
from cloud.crm.settings import load_settings
from cloud.runtime import Runtime
from cloud.storage.dynamo import error_code
from wire_protocol.messages import RecordingAck, RecordingReady, RecordingResult, UploadRecording

from .store import RecordingItem, get_recording, iso, object_key, put_recording

__all__ = ["URL_SECONDS", "checksum_b64", "on_recording_ready", "on_recording_result"]

log = logging.getLogger("cloud.recordings")

#: How long a pre-signed URL works: enough to convert and upload an hour-long call on a slow line.
URL_SECONDS = 3600
CHECKSUM_HEADER = "x-amz-checksum-sha256"
#: Read size when the cloud hashes an object itself (S3 kept no checksum for it).
HASH_CHUNK = 1024 * 1024


def _licensed(rt: Runtime, tenant: str, now: datetime) -> bool:
    from cloud import licensing

    return licensing.entitlements(rt, tenant, now).allows("recordings")


def on_recording_ready(
    rt: Runtime, tenant: str, agent_id: str, ready: RecordingReady, now: datetime
) -> UploadRecording:
    """Where the agent should put the recording of ``ready.call_id`` (or why not)."""
    call_id = ready.call_id

    def no(reason: str, *, retry: bool = False) -> UploadRecording:
        return UploadRecording(call_id=call_id, reason=reason, retry=retry)

    call = get_call(rt, tenant, agent_id, call_id)
    if call is None or call.summary is None:
        return no("the cloud has not stored this call's end yet", retry=True)
    existing = get_recording(rt, tenant, agent_id, call_id)
    if existing is not None and existing.state in ("uploaded", "expired"):
        return no("already_uploaded")
    settings = load_settings(rt, tenant).recordings
    if not settings.enabled:
        return no("disabled")
    if not _licensed(rt, tenant, now):
        return no("not_licensed")
    key = object_key(tenant, agent_id, call_id)
    item = RecordingItem(
        tenant, agent_id, call_id, "requested", key, settings.format, sha256=ready.sha256, requested_at=iso(now)
    )
    if not put_recording(rt, item, unless_uploaded=True):
        return no("already_uploaded")
    params = {"Bucket": rt.settings.bucket, "Key": key}
    headers = {}
    if ready.sha256 is not None:  # signed: S3 refuses a body that does not hash to it (BadDigest)
        params["ChecksumSHA256"] = headers[CHECKSUM_HEADER] = checksum_b64(ready.sha256)
    url = rt.s3.generate_presigned_url("put_object", Params=params, ExpiresIn=URL_SECONDS, HttpMethod="PUT")
    log.info("recording of %s/%s/%s: upload URL handed out (%s bytes)", tenant, agent_id, call_id, ready.size)
    return UploadRecording(
        call_id=call_id,
        url=url,
        headers=headers,
        key=key,
        format=settings.format,
        expires_at=now + timedelta(seconds=URL_SECONDS),
    )


def on_recording_result(
    rt: Runtime, tenant: str, agent_id: str, result: RecordingResult, now: datetime
) -> tuple[RecordingAck, bool]:
    """Record the agent's result; ``True`` when the call's CRM side must now look again (a recording to
    attach, or one that will never come). Always acknowledged: resending cannot change a verdict."""
    call_id = result.call_id
    existing = get_recording(rt, tenant, agent_id, call_id)
    ack = RecordingAck(call_id=call_id)
    if existing is not None and existing.state in ("uploaded", "expired"):
        return ack, False  # a resent result
    key = object_key(tenant, agent_id, call_id)
    base = existing or RecordingItem(tenant, agent_id, call_id, "failed", key)
    if not result.ok:
        failed = RecordingItem(
            tenant, agent_id, call_id, "failed", key, base.format, error=result.error or "failed", note=result.note
        )
        put_recording(rt, failed)
        log.warning("recording of %s/%s/%s failed on the agent: %s", tenant, agent_id, call_id, result.error)
        return ack, True
    problem = None
    if existing is None or result.key != key:
        problem = "the agent reported an upload the cloud did not ask for"
    elif existing.sha256 is not None:  # the agent announced the file's SHA-256: the object must have it
        problem = _check_checksum(rt, key, existing.sha256, result)
        if problem is not None:  # corrupted on the way: deleted, never attached; the agent uploads again
            log.warning("recording of %s/%s/%s did not verify, upload again: %s", tenant, agent_id, call_id, problem)
            _delete_quietly(rt, key)
            put_recording(rt, dataclasses.replace(existing, note=f"upload did not verify ({problem}); retrying"))
            return RecordingAck(call_id=call_id, retry=True, reason=problem[:200]), False
    else:
        problem = _check_object(rt, key, result.size)
    if problem is not None:
        log.warning("recording of %s/%s/%s refused: %s", tenant, agent_id, call_id, problem)
        put_recording(rt, RecordingItem(tenant, agent_id, call_id, "failed", key, base.format, error="unverified",
                                        note=problem))  # fmt: skip
        return ack, True
    retention = load_settings(rt, tenant).recordings.retention_days
    uploaded = RecordingItem(
        tenant,
        agent_id,
        call_id,
        "uploaded",
        key,
        result.format or base.format,
        size=result.size,
        sha256=result.sha256 or base.sha256,
        note=result.note,
        requested_at=base.requested_at,
        uploaded_at=iso(now),
        expires_on=iso(now + timedelta(days=retention)),
    )
    put_recording(rt, uploaded)
    log.info("recording of %s/%s/%s uploaded (%s, %s bytes)", tenant, agent_id, call_id, uploaded.format, result.size)
    return ack, True


def checksum_b64(sha256: str) -> str:
    """S3's form of a SHA-256 (``x-amz-checksum-sha256``, ``ChecksumSHA256``): the digest in base64."""
    return base64.b64encode(bytes.fromhex(sha256)).decode()


def _check_checksum(rt: Runtime, key: str, expected: str, result: RecordingResult) -> str | None:
    """Does the object hash to the SHA-256 the agent announced before its upload? S3 verified the body against
    the signed ``x-amz-checksum-sha256`` and keeps the checksum (``ChecksumMode=ENABLED``); where it kept none
    (moto, an S3 look-alike) the object is hashed here, streaming."""
    if result.sha256 is not None and result.sha256 != expected:
        return "the agent reports another SHA-256 than it announced"
    try:
        head = rt.s3.head_object(Bucket=rt.settings.bucket, Key=key, ChecksumMode="ENABLED")
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return "no object under the recording's key"
        raise
    if result.size is not None and int(head.get("ContentLength", -1)) != result.size:
        return f"the object has {head.get('ContentLength')} bytes, the agent uploaded {result.size}"
    stored = head.get("ChecksumSHA256")
    if stored is not None:
        return None if stored == checksum_b64(expected) else "S3 keeps another SHA-256 for the object"
    digest = hashlib.sha256()
    body = rt.s3.get_object(Bucket=rt.settings.bucket, Key=key)["Body"]
    try:
        for chunk in body.iter_chunks(HASH_CHUNK):
            digest.update(chunk)
    finally:
        body.close()
    return None if digest.hexdigest() == expected else "the object's SHA-256 is not the one the agent announced"


def _delete_quietly(rt: Runtime, key: str) -> None:
    try:
        rt.s3.delete_object(Bucket=rt.settings.bucket, Key=key)
    except Exception as exc:  # the agent's next upload overwrites it anyway
        log.warning("could not delete the unverified recording %s: %s", key, error_code(exc) or exc)


def _check_object(rt: Runtime, key: str, size: int | None) -> str | None:
    try:
        head = rt.s3.head_object(Bucket=rt.settings.bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return "no object under the recording's key"
        raise
    if size is not None and int(head.get("ContentLength", -1)) != size:
        return f"the object has {head.get('ContentLength')} bytes, the agent uploaded {size}"
    return None
