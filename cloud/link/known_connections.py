"""Who is on a connection, remembered by a warm container: the registry's ``conn#`` item is written once on
``$connect`` and only ever deleted after it, so every message on a connection would read the same answer.

Remembered until the item's own expiry, and forgotten when this container drops the connection (revocation, a
gone socket). A connection dropped elsewhere sends nothing more (API Gateway closed it); a revoked agent is still
refused on its next message, since the agent item is read on every message.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict

from cloud.agents import connections
from cloud.agents.connections import Connection
from cloud.runtime import Runtime

__all__ = ["connection_agent", "forget"]

#: Connections one container remembers (an agent keeps one, two while it renews).
MAX_REMEMBERED = 4096

_known: weakref.WeakKeyDictionary[Runtime, OrderedDict[str, Connection]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def connection_agent(rt: Runtime, connection_id: str) -> Connection | None:
    """:func:`cloud.agents.connections.connection_agent`, read once per connection and container."""
    now = int(time.time())
    with _lock:
        known = _known.setdefault(rt, OrderedDict())
        conn = known.get(connection_id)
        if conn is not None and conn.expires_at > now:
            known.move_to_end(connection_id)
            return conn
    conn = connections.connection_agent(rt, connection_id)
    if conn is not None:
        with _lock:
            known[connection_id] = conn
            while len(known) > MAX_REMEMBERED:
                known.popitem(last=False)
    return conn


def forget(rt: Runtime, connection_id: str) -> None:
    with _lock:
        known = _known.get(rt)
        if known is not None:
            known.pop(connection_id, None)
