"""The recording uploader of ``edge-agent run``: from a finished call's MixMonitor file to the cloud's bucket.

1. :meth:`call_ended` (from the outbox sink, right after the ``call_ended`` event is stored) queues the call;
   :meth:`call_backfilled` does the same for a call sent from the CDR.
2. Every second, :meth:`step` looks at each queued recording: ``waiting`` until the file stopped changing
   (or is reported ``missing``/``unreadable``, never retried), then ``ready``: once the cloud holds the call
   (its ``call_ended`` was acknowledged) the file is prepared (converted when MP3 is wanted) and hashed, and
   ``recording_ready`` announces its SHA-256; the cloud answers ``upload_recording`` with a pre-signed URL
   signed with that checksum (:meth:`on_message`).
3. The upload (``uploading``): stream a ``PUT`` from disk, hashing the bytes as they go. A failure waits
   (backoff) and asks for a new URL; after ``max_attempts`` the recording is reported failed.
4. The result is stored (``reported``) and sent until ``recording_ack``; then the row goes. An ack with
   ``retry`` (the cloud found the object did not match the SHA-256) counts as a failed attempt: upload again.

Nothing here blocks the event loop for long: file reads, hashing and conversion run in threads or processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path

import httpx

from edge_agent.recordings.backfilled import queue_backfilled
from edge_agent.recordings.files import look, prepare, remove, size_and_sha256
from edge_agent.recordings.paths import local_path
from edge_agent.recordings.queue import PreparedUpload, RecordingQueue, RecordingRow
from edge_agent.recordings.settings import RecordingsSettings
from edge_agent.recordings.steps import backoff, watch
from edge_agent.recordings.upload import UploadError, put_file
from wire_protocol.call_events import CallEnded
from wire_protocol.messages import RecordingAck, RecordingFormat, RecordingReady, RecordingResult, UploadRecording

__all__ = ["RecordingUploader"]

log = logging.getLogger(__name__)

#: An unanswered ``recording_ready`` or unacknowledged ``recording_result`` is sent again this late.
RESEND_SECONDS = 30.0
CHECKSUM_HEADER = "x-amz-checksum-sha256"


def default_http_client() -> httpx.AsyncClient:
    """Uploads may take minutes on a slow line: generous read/write timeouts, a short connect timeout."""
    return httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0), follow_redirects=False)


def checksum_header(sha256: str) -> str:
    """S3's ``x-amz-checksum-sha256``: the digest in base64."""
    return base64.b64encode(bytes.fromhex(sha256)).decode()


class RecordingUploader:
    """Drives the queue; ``send`` hands a message to the link (``False``: no connection now, try later)."""

    def __init__(
        self,
        queue: RecordingQueue,
        settings: RecordingsSettings,
        work_dir: Path,
        send: Callable[[RecordingReady | RecordingResult], bool],
        *,
        allow_http: bool = False,
        http_factory: Callable[[], httpx.AsyncClient] = default_http_client,
        clock: Callable[[], float] = time.time,
        poll: float = 1.0,
    ) -> None:
        self.queue, self.settings, self.work_dir = queue, settings, work_dir
        self._send = send
        self._allow_http = allow_http
        self._http_factory = http_factory
        self._http: httpx.AsyncClient | None = None
        self._clock = clock
        self._poll = poll
        self._sent_at: dict[str, float] = {}  # call id -> when recording_ready/result last went out
        self._uploads: dict[str, asyncio.Task[None]] = {}
        self._preparing: dict[str, asyncio.Task[None]] = {}
        #: The format the tenant wants, as the cloud last said (its default until it says): files are prepared
        #: in it before the cloud is asked, since the SHA-256 it signs is the prepared file's.
        self.wanted: RecordingFormat = "mp3"
        self._wake = asyncio.Event()
        self.uploaded = 0  # counters for logs and tests
        self.failed = 0

    # -- inputs -----------------------------------------------------------------------------------------

    def call_ended(self, event: CallEnded, seq: int) -> None:
        """The call's ``call_ended`` is stored under outbox ``seq``: queue its recording, if it has one."""
        if not self.settings.enabled or not event.summary.recording:
            return
        if self.queue.add(event.call_id, event.summary.recording, seq, self._clock()):
            log.info("recordings: %s queued (%s)", event.call_id, event.summary.recording)
        self._wake.set()

    def call_backfilled(self, event: CallEnded, seq: int, zone: tzinfo) -> None:
        """A ``call_ended`` from the CDR is stored under ``seq``: queue the recording its CDR row names (resolved
        inside the recordings directory; ``zone`` is the CDR's, for FreePBX's date folders)."""
        if queue_backfilled(self.queue, self.settings, event, seq, zone, self._clock()):
            self._wake.set()

    def on_message(self, message: UploadRecording | RecordingAck) -> None:
        now = self._clock()
        row = self.queue.get(message.call_id)
        if isinstance(message, RecordingAck):
            if row is None or row.state != "reported":
                return
            self._sent_at.pop(message.call_id, None)
            if message.retry and (result := row.stored_result) is not None and result.ok:
                self._forget_prepared(row, now)
                self.queue.update(row.call_id, now, result=None)
                reason = f"the cloud could not verify the upload ({message.reason or 'checksum'})"
                self._failed_attempt(self.queue.get(row.call_id) or row, reason, now)
                return
            self._forget_prepared(row, now)
            self.queue.delete(message.call_id)
            log.info("recordings: %s done (the cloud has the result)", message.call_id)
            return
        if row is None or row.state != "ready" or message.call_id in self._uploads:
            log.debug("recordings: upload_recording for %s not expected now; ignored", message.call_id)
            return
        self._sent_at.pop(message.call_id, None)
        if message.url is None:
            if not message.retry:
                log.info("recordings: the cloud does not want %s (%s)", message.call_id, message.reason)
                self._forget_prepared(row, now)
                self.queue.delete(message.call_id)
                return
            self._failed_attempt(row, f"the cloud asked to retry later ({message.reason})", now)
            return
        self.wanted = message.format
        prepared = row.prepared_upload
        if prepared is None or prepared.wanted != message.format:
            # hashed for another format (the first recording after a start, or the tenant changed it): again
            log.info("recordings: %s: the cloud wants %s; preparing it again", row.call_id, message.format)
            self._forget_prepared(row, now)
            self._ask(self.queue.get(row.call_id) or row, now)
            return
        signed = {k.lower(): v for k, v in message.headers.items()}.get(CHECKSUM_HEADER)
        if signed is not None and signed != checksum_header(prepared.sha256):
            self._failed_attempt(row, "the URL is signed for another checksum (an answer to an older question)", now)
            return
        if not self._allow_http and not message.url.startswith("https://"):
            self._failed_attempt(row, "the upload URL is not https", now)
            return
        self.queue.update(row.call_id, now, state="uploading")
        task = asyncio.create_task(self._upload(row, message, prepared), name=f"upload {row.call_id}")
        self._uploads[row.call_id] = task
        task.add_done_callback(lambda _: self._uploads.pop(row.call_id, None))

    async def drain(self) -> None:
        """Wait until no preparation or upload is running (tests, and tools that upload one batch and stop)."""
        while self._uploads or self._preparing:
            await asyncio.gather(*self._uploads.values(), *self._preparing.values(), return_exceptions=True)

    # -- the loop ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        recovered = self.queue.recover(self._clock())
        if recovered:
            log.info("recordings: %d upload(s) interrupted by a restart start again", recovered)
        try:
            while True:
                try:
                    await self.step()
                except Exception:
                    log.exception("recordings: a step failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)
                self._wake.clear()
        finally:
            running = [*self._uploads.values(), *self._preparing.values()]
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if self._http is not None:
                await self._http.aclose()

    async def step(self) -> None:
        """One look at every queued recording."""
        for row in self.queue.rows():
            now = self._clock()
            if row.state == "waiting":
                await self._watch(row, now)
            elif row.state == "ready":
                self._ask(row, now)
            elif row.state == "reported":
                self._resend_result(row, now)

    async def _watch(self, row: RecordingRow, now: float) -> None:
        path = local_path(row.pbx_path, self.settings)
        seen = await asyncio.to_thread(look, path) if path is not None else None
        decision = watch(row, seen, now, self.settings)
        if decision.changes:
            self.queue.update(row.call_id, now, **decision.changes)
        if decision.outcome == "ready":
            log.info("recordings: %s complete (%s bytes)", row.call_id, row.size)
            self.queue.update(row.call_id, now, state="ready")
            self._ask(self.queue.get(row.call_id) or row, now)
        elif decision.outcome == "missing":
            where = str(path) if path is not None else "no usable path"
            self._finish(row, _error(row, "missing", f"recording {row.pbx_path} not found at {where}"), now)
        elif decision.outcome == "unreadable":
            self._finish(row, _error(row, "unreadable", f"recording {path} cannot be read: {seen}"), now)

    def _ask(self, row: RecordingRow, now: float) -> None:
        """Ask for a URL, announcing the prepared file's SHA-256; prepare (convert, hash) it first."""
        if row.next_at > now or row.call_id in self._uploads or row.call_id in self._preparing:
            return  # backing off or busy
        if self.queue.event_pending(row.event_seq):
            return  # the cloud does not hold the call yet
        if now - self._sent_at.get(row.call_id, float("-inf")) < RESEND_SECONDS:
            return
        prepared = row.prepared_upload
        if prepared is None or prepared.wanted != self.wanted:
            self._forget_prepared(row, now)
            task = asyncio.create_task(self._prepare(row, self.wanted), name=f"prepare {row.call_id}")
            self._preparing[row.call_id] = task
            return
        ready = RecordingReady(call_id=row.call_id, size=row.size or 0, sha256=prepared.sha256, format=prepared.format)
        if self._send(ready):
            self._sent_at[row.call_id] = now

    def _resend_result(self, row: RecordingRow, now: float) -> None:
        result = row.stored_result
        if result is None or now - self._sent_at.get(row.call_id, float("-inf")) < RESEND_SECONDS:
            return
        if self._send(result):
            self._sent_at[row.call_id] = now

    # -- preparing and uploading ------------------------------------------------------------------------

    async def _prepare(self, row: RecordingRow, wanted: RecordingFormat) -> None:
        """Convert when ``wanted`` and possible, hash the file to upload (one read; the MP3 is a quarter of the
        WAV), store both with the row, then ask."""
        try:
            path = local_path(row.pbx_path, self.settings)
            now = self._clock()
            if path is None:
                self._finish(row, _error(row, "missing", f"recording {row.pbx_path}: no usable path"), now)
                return
            name = hashlib.sha256(row.call_id.encode()).hexdigest()[:24]
            try:
                made = await prepare(path, wanted, self.settings, self.work_dir, name)
                size, sha256 = await asyncio.to_thread(size_and_sha256, made.path)
            except FileNotFoundError:
                self._finish(row, _error(row, "missing", f"recording {path} disappeared before its upload"), now)
                return
            except OSError as exc:
                self._finish(row, _error(row, "unreadable", f"recording {path} cannot be read: {exc}"), now)
                return
            prepared = PreparedUpload(
                path=str(made.path), format=made.format, wanted=wanted, size=size, sha256=sha256,
                temporary=made.temporary, note=made.note,
            )  # fmt: skip
            self.queue.update(row.call_id, self._clock(), prepared=prepared.model_dump_json())
        finally:
            self._preparing.pop(row.call_id, None)
        current = self.queue.get(row.call_id)
        if current is not None and current.state == "ready":
            self._ask(current, self._clock())

    async def _upload(self, row: RecordingRow, order: UploadRecording, prepared: PreparedUpload) -> None:
        assert order.url is not None
        path = Path(prepared.path)
        try:
            if self._http is None:
                self._http = self._http_factory()
            sent = await put_file(self._http, order.url, order.headers, path, prepared.size, prepared.format)
            if sent != prepared.sha256:
                raise UploadError("the file changed after it was hashed; hashing it again")
        except FileNotFoundError:
            if prepared.temporary:  # our MP3 went (a cleaned work directory): convert again, no attempt lost
                self._forget_prepared(row, self._clock())
                self.queue.update(row.call_id, self._clock(), state="ready")
                self._wake.set()
            else:
                self._finish(
                    row, _error(row, "missing", f"recording {path} disappeared before its upload"), self._clock()
                )
            return
        except OSError as exc:  # the source became unreadable
            self._finish(row, _error(row, "unreadable", f"recording {path} cannot be read: {exc}"), self._clock())
            return
        except UploadError as exc:
            now = self._clock()
            if not prepared.temporary:  # a WAV is hashed again: it may have changed (S3 refused the checksum)
                self._forget_prepared(row, now)
            self._failed_attempt(self.queue.get(row.call_id) or row, str(exc), now)
            return
        self.uploaded += 1
        log.info("recordings: %s uploaded (%s, %d bytes)", row.call_id, prepared.format, prepared.size)
        result = RecordingResult(
            call_id=row.call_id,
            ok=True,
            key=order.key,
            format=prepared.format,
            size=prepared.size,
            sha256=prepared.sha256,
            note=prepared.note,
        )
        self._finish(row, result, self._clock())

    def _forget_prepared(self, row: RecordingRow, now: float) -> None:
        """Drop the prepared file's record (and our MP3): the next ask prepares and hashes again."""
        current = self.queue.get(row.call_id)
        prepared = current.prepared_upload if current is not None else None
        if prepared is None:
            return
        if prepared.temporary:
            remove(Path(prepared.path))
        self.queue.update(row.call_id, now, prepared=None)

    def _failed_attempt(self, row: RecordingRow, reason: str, now: float) -> None:
        attempts = row.attempts + 1
        if attempts >= self.settings.max_attempts:
            note = f"gave up after {attempts} attempts; last: {reason}"
            self._finish(row, _error(row, "upload_failed", note), now)
            return
        delay = backoff(attempts)
        log.warning("recordings: %s attempt %d failed (%s); again in %.0f s", row.call_id, attempts, reason, delay)
        self.queue.update(row.call_id, now, state="ready", attempts=attempts, next_at=now + delay)

    def _finish(self, row: RecordingRow, result: RecordingResult, now: float) -> None:
        """Store the result first (a restart resends it), then send it. Our MP3 is not needed any more."""
        if not result.ok:
            self.failed += 1
            log.warning("recordings: %s: %s (%s)", row.call_id, result.error, result.note)
        current = self.queue.get(row.call_id)
        prepared = current.prepared_upload if current is not None else None
        if prepared is not None and prepared.temporary:
            remove(Path(prepared.path))
        self.queue.report(row.call_id, result, now)
        self._sent_at.pop(row.call_id, None)
        if self._send(result):
            self._sent_at[row.call_id] = now


def _error(row: RecordingRow, code: str, note: str) -> RecordingResult:
    return RecordingResult(call_id=row.call_id, ok=False, error=code, note=note[:500])
