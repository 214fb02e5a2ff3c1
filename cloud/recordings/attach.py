"""attachRecord's second step for the CRM pipeline: the S3 object, streamed to Bitrix24's ``uploadUrl``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from cloud.crm.executor import RecordUpload
from cloud.crm.operations import AttachRecord
from cloud.runtime import Runtime

__all__ = ["FileUploadClient", "record_upload"]

CHUNK = 1024 * 1024
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}


@runtime_checkable
class FileUploadClient(Protocol):
    """:class:`cloud.bitrix24.client.Bitrix24Client` fits."""

    def upload_file(
        self, url: str, field_name: str, filename: str, chunks: Iterable[bytes], size: int, content_type: str
    ) -> Any: ...


def record_upload(rt: Runtime, client: object) -> RecordUpload | None:
    """How the pipeline uploads a recording through ``client`` (``None``: this client cannot)."""
    if not isinstance(client, FileUploadClient):
        return None
    uploader: FileUploadClient = client

    def upload(op: AttachRecord, url: str, field_name: str) -> Any:
        obj = rt.s3.get_object(Bucket=rt.settings.bucket, Key=op.object_key)
        body = obj["Body"]
        try:
            content_type = CONTENT_TYPES.get(op.filename.rsplit(".", 1)[-1].lower(), "application/octet-stream")
            chunks = body.iter_chunks(CHUNK)
            return uploader.upload_file(url, field_name, op.filename, chunks, int(obj["ContentLength"]), content_type)
        finally:
            body.close()

    return upload
