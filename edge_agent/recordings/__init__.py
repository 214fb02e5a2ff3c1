"""Call recordings: found by the interpreter (MixMonitor), uploaded out of band once the call is over.

``settings`` (what the operator configures), ``paths`` (the PBX's file name → the file the agent can read),
``queue`` (pending uploads in the outbox's SQLite file), ``steps`` (the pure decisions), ``files`` (stability
checks, MP3 conversion, hashing), ``upload`` (the streaming HTTP ``PUT``), ``uploader`` (the asyncio driver).
See ``docs/recordings.md``.
"""
