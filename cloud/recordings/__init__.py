"""Call recordings: the bucket, the ``recordings`` table, the agent's upload requests and results, retention.

``store`` (items and object keys), ``service`` (``recording_ready`` → a pre-signed ``PUT``; ``recording_result``
→ verified and recorded, the CRM told), ``bucket`` (creation, lifecycle safety net), ``retention`` (the
per-tenant expiry sweep), ``attach`` (an object streamed to Bitrix24's ``uploadUrl``). See ``docs/recordings.md``.
"""
