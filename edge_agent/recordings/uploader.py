"""The recording uploader of ``edge-agent run``: from a finished call's MixMonitor file to the cloud's bucket.

1. :meth:`call_ended` (from the outbox sink, right after the ``call_ended`` event is stored) queues the call.
2. Every second, :meth:`step` looks at each queued recording: ``waiting`` until the file stopped changing
   (or is reported ``missing``/``unreadable``, never retried), then ``ready``: once the cloud holds the call
   (its ``call_ended`` was acknowledged) it sends ``recording_ready`` and the cloud answers
   ``upload_recording`` with a pre-signed URL (:meth:`on_message`).
3. The upload (``uploading``): convert when MP3 is wanted, hash, stream a ``PUT`` from disk. A failure waits
   (backoff) and asks for a new URL; after ``max_attempts`` the recording is reported failed.
4. The result is stored (``reported``) and sent until ``recording_ack``; then the row goes.

Nothing here blocks the event loop for long: file reads, hashing and conversion run in threads or processes.
"""

from __future__ import annotations

import asyncio
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
from edge_agent.recordings.queue import RecordingQueue, RecordingRow
from edge_agent.recordings.settings import RecordingsSettings
from edge_agent.recordings.steps import backoff, watch
from edge_agent.recordings.upload import UploadError, put_file
from wire_protocol.call_events import CallEnded
from wire_protocol.messages import RecordingAck, RecordingReady, RecordingResult, UploadRecording

__all__ = ["RecordingUploader"]

log = logging.getLogger(__name__)

#: An unanswered ``recording_ready`` or unacknowledged ``recording_result`` is sent again this late.
RESEND_SECONDS = 30.0


def default_http_client() -> httpx.AsyncClient:
    """Uploads may take minutes on a slow line: generous read/write timeouts, a short connect timeout."""
    return httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0), follow_redirects=False)


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
            if row is not None and row.state == "reported":
                self.queue.delete(message.call_id)
                self._sent_at.pop(message.call_id, None)
                log.info("recordings: %s done (the cloud has the result)", message.call_id)
            return
        if row is None or row.state != "ready" or message.call_id in self._uploads:
            log.debug("recordings: upload_recording for %s not expected now; ignored", message.call_id)
            return
        self._sent_at.pop(message.call_id, None)
        if message.url is None:
            if not message.retry:
                log.info("recordings: the cloud does not want %s (%s)", message.call_id, message.reason)
                self.queue.delete(message.call_id)
                return
            self._failed_attempt(row, f"the cloud asked to retry later ({message.reason})", now)
            return
        if not self._allow_http and not message.url.startswith("https://"):
            self._failed_attempt(row, "the upload URL is not https", now)
            return
        self.queue.update(row.call_id, now, state="uploading")
        task = asyncio.create_task(self._upload(row, message), name=f"upload {row.call_id}")
        self._uploads[row.call_id] = task
        task.add_done_callback(lambda _: self._uploads.pop(row.call_id, None))

    async def drain(self) -> None:
        """Wait until no upload is running (tests, and tools that upload one batch and stop)."""
        while self._uploads:
            await asyncio.gather(*list(self._uploads.values()), return_exceptions=True)

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
            for task in list(self._uploads.values()):
                task.cancel()
            await asyncio.gather(*self._uploads.values(), return_exceptions=True)
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
        if row.next_at > now or row.call_id in self._uploads or self.queue.event_pending(row.event_seq):
            return  # backing off, busy, or the cloud does not hold the call yet
        if now - self._sent_at.get(row.call_id, float("-inf")) < RESEND_SECONDS:
            return
        if self._send(RecordingReady(call_id=row.call_id, size=row.size or 0)):
            self._sent_at[row.call_id] = now

    def _resend_result(self, row: RecordingRow, now: float) -> None:
        result = row.stored_result
        if result is None or now - self._sent_at.get(row.call_id, float("-inf")) < RESEND_SECONDS:
            return
        if self._send(result):
            self._sent_at[row.call_id] = now

    # -- the upload -------------------------------------------------------------------------------------

    async def _upload(self, row: RecordingRow, order: UploadRecording) -> None:
        assert order.url is not None
        path = local_path(row.pbx_path, self.settings)
        now = self._clock()
        if path is None:
            self._finish(row, _error(row, "missing", f"recording {row.pbx_path}: no usable path"), now)
            return
        name = hashlib.sha256(row.call_id.encode()).hexdigest()[:24]
        try:
            prepared = await prepare(path, order.format, self.settings, self.work_dir, name)
            size, sha256 = await asyncio.to_thread(size_and_sha256, prepared.path)
        except FileNotFoundError:
            self._finish(row, _error(row, "missing", f"recording {path} disappeared before its upload"), now)
            return
        except OSError as exc:
            self._finish(row, _error(row, "unreadable", f"recording {path} cannot be read: {exc}"), now)
            return
        try:
            if self._http is None:
                self._http = self._http_factory()
            await put_file(self._http, order.url, order.headers, prepared.path, size, prepared.format)
        except UploadError as exc:
            self._failed_attempt(self.queue.get(row.call_id) or row, str(exc), self._clock())
            return
        finally:
            if prepared.temporary:
                remove(prepared.path)
        self.uploaded += 1
        log.info("recordings: %s uploaded (%s, %d bytes)", row.call_id, prepared.format, size)
        result = RecordingResult(
            call_id=row.call_id,
            ok=True,
            key=order.key,
            format=prepared.format,
            size=size,
            sha256=sha256,
            note=prepared.note,
        )
        self._finish(row, result, self._clock())

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
        """Store the result first (a restart resends it), then send it."""
        if not result.ok:
            self.failed += 1
            log.warning("recordings: %s: %s (%s)", row.call_id, result.error, result.note)
        self.queue.report(row.call_id, result, now)
        self._sent_at.pop(row.call_id, None)
        if self._send(result):
            self._sent_at[row.call_id] = now


def _error(row: RecordingRow, code: str, note: str) -> RecordingResult:
    return RecordingResult(call_id=row.call_id, ok=False, error=code, note=note[:500])
