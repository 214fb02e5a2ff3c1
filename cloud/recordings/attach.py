"""attachRecord's second step for the CRM pipeline: the S3 object, streamed to Bitrix24's ``uploadUrl``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from cloud.bitrix24.errors import RateLimited
from cloud.crm.executor import RecordUpload
from cloud.crm.operations import AttachRecord
from cloud.runtime import Runtime

__all__ = ["FileUploadClient", "record_upload"]

CHUNK = 1024 * 1024
#: How long an upload refused by the portal's rate limit is retried in place, as a REST call is: the attachRecord
#: just before took the bucket's last free slot, and deferring the whole call for that costs a second attachRecord.
RATE_LIMIT_BUDGET = 3.0
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}


@runtime_checkable
class FileUploadClient(Protocol):
    """:class:`cloud.bitrix24.client.Bitrix24Client` fits."""

    def upload_file(
        self, url: str, field_name: str, filename: str, chunks: Iterable[bytes], size: int, content_type: str
    ) -> Any: ...


def record_upload(
    rt: Runtime,
    client: object,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RecordUpload | None:
    """How the pipeline uploads a recording through ``client`` (``None``: this client cannot)."""
    if not isinstance(client, FileUploadClient):
        return None
    uploader: FileUploadClient = client

    def upload_once(op: AttachRecord, url: str, field_name: str) -> Any:
        obj = rt.s3.get_object(Bucket=rt.settings.bucket, Key=op.object_key)
        body = obj["Body"]
        try:
            content_type = CONTENT_TYPES.get(op.filename.rsplit(".", 1)[-1].lower(), "application/octet-stream")
            chunks = body.iter_chunks(CHUNK)
            return uploader.upload_file(url, field_name, op.filename, chunks, int(obj["ContentLength"]), content_type)
        finally:
            body.close()

    def upload(op: AttachRecord, url: str, field_name: str) -> Any:
        deadline = clock() + RATE_LIMIT_BUDGET
        while True:
            try:
                return upload_once(op, url, field_name)  # a fresh read of the object each time: the body is a stream
            except RateLimited as exc:
                wait = min(max(exc.retry_after, 0.5), 1.0)
                if clock() + wait > deadline:
                    raise
                sleep(wait)

    return upload
