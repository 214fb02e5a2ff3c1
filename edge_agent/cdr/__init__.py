"""Backfill from the PBX's own CDR database: the calls the agent never saw on AMI (it was down or cut off).

``rows`` and ``summaries`` are pure (rows in, :class:`CallSummary` out, with the interpreter's channel rules);
``settings`` parses ``EDGE_CDR_DSN``; ``readers`` are the thin database drivers; ``backfill`` decides which calls
of a period to send and stores them in the outbox. See docs/cdr-backfill.md.
"""
