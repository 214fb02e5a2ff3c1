"""The edge agent: runs next to Asterisk, turns its AMI stream into calls, streams them to the cloud.

Where things live:

- ``edge_agent.ami.framing``   raw AMI bytes -> messages (sans-I/O)
- ``edge_agent.ami.connector`` the AMI connection: login, filters, watchdog, reconnect, reconcile (I/O)
- ``edge_agent.calls``          the call interpreter: AMI messages -> call events (sans-I/O)
- ``edge_agent.trace``          trace files (JSON Lines of AMI messages): record, mask, read
- ``edge_agent.outbox``         the durable outbox: every call event on disk until the cloud acknowledges it
- ``edge_agent.link``           the websocket link to the cloud: protocol (sans-I/O) and client (I/O)
- ``edge_agent.commands``       commands from the cloud (click-to-call), each run at most once
- ``edge_agent.agent``          ``edge-agent run``: AMI -> interpreter -> outbox -> link
- ``edge_agent.doctor``         ``edge-agent doctor``: checks AMI, cloud, token, clock, outbox
- ``edge_agent.cli``            the ``edge-agent`` command
"""

__version__ = "0.1.0"
