"""Recordings of calls the agent knows only from the CDR (``call_ended`` with reason ``backfilled``).

The CDR names the file the way the PBX wrote it in the database (FreePBX: a bare name in ``recordingfile``), so
the name is resolved inside the recordings directory first (:func:`~edge_agent.recordings.paths.cdr_candidates`),
the first candidate that exists on the agent's disk is queued, and from there the recording goes exactly the way an
AMI-seen call's does (same queue, stability check, conversion, retries, ``missing`` reported once). A value that
would leave the recordings directory is refused: logged with the reason and reported on the call as ``refused``;
the call itself is sent regardless.
"""

from __future__ import annotations

import logging
import os
from datetime import tzinfo

from edge_agent.recordings.paths import cdr_candidates, local_path
from edge_agent.recordings.queue import RecordingQueue
from edge_agent.recordings.settings import RecordingsSettings
from wire_protocol.call_events import CallEnded
from wire_protocol.messages import RecordingResult

__all__ = ["choose_candidate", "queue_backfilled"]

log = logging.getLogger(__name__)


def choose_candidate(candidates: tuple[str, ...], settings: RecordingsSettings) -> tuple[str, str | None]:
    """``(PBX path to queue, refusal)``: the first candidate present on disk, else the first (reported missing
    later). A present file whose real path leaves the recordings directory (a symbolic link) is refused."""
    directory = local_path(settings.relative_dir, settings)
    for candidate in candidates:
        path = local_path(candidate, settings)
        if path is None or not os.path.lexists(path):
            continue
        if directory is not None:
            real, inside = os.path.realpath(path), os.path.realpath(directory)
            if not real.startswith(inside.rstrip("/") + "/"):
                return candidate, f"{candidate} leads (through a symbolic link) outside the recordings directory"
        return candidate, None
    return candidates[0], None


def queue_backfilled(
    queue: RecordingQueue, settings: RecordingsSettings, event: CallEnded, seq: int, zone: tzinfo, now: float
) -> bool:
    """Queue the recording a backfilled ``call_ended`` (outbox ``seq``) names, once per call; ``True`` if queued.
    ``zone``: the CDR's (FreePBX files recordings under the call's local date)."""
    value = event.summary.recording
    if not settings.enabled or not value:
        return False
    summary = event.summary
    found = cdr_candidates(value, summary.started_at, summary.ended_at, zone, settings)
    refused = found.refused
    pbx_path = ""
    if refused is None and found.candidates:
        pbx_path, refused = choose_candidate(found.candidates, settings)
    elif refused is None:
        return False
    if refused is not None:
        log.warning("recordings: %s: the CDR's recording %r is not followed: %s", event.call_id, value[:200], refused)
        if queue.add(event.call_id, value[:1024], seq, now):
            note = f"the CDR's recording name is not followed: {refused}"[:500]
            result = RecordingResult(call_id=event.call_id, ok=False, error="refused", note=note)
            queue.report(event.call_id, result, now)
        return False
    if not queue.add(event.call_id, pbx_path, seq, now):
        return False  # already queued (a call ends once)
    where = "" if len(found.candidates) == 1 else f" (of {len(found.candidates)} places looked at)"
    log.info("recordings: %s queued from the CDR: %s%s", event.call_id, pbx_path, where)
    return True
