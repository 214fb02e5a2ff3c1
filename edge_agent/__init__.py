"""The edge agent: runs next to Asterisk, turns its AMI stream into calls, streams them to the cloud.

Where things live:

- ``edge_agent.ami.framing``   raw AMI bytes -> messages (sans-I/O)
- ``edge_agent.ami.connector`` the AMI connection: login, filters, watchdog, reconnect, reconcile (I/O)
- ``edge_agent.calls``          the call interpreter: AMI messages -> call events (sans-I/O)
- ``edge_agent.trace``          trace files (JSON Lines of AMI messages): record, mask, read
- ``edge_agent.cli``            the ``edge-agent`` command
"""

__version__ = "0.1.0"
