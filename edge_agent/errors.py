"""The edge agent's exceptions, one hierarchy.

::

    EdgeAgentError
    ├── ConfigError            a setting is missing or invalid; the message names it
    ├── TraceError             a trace file cannot be read or written
    ├── AmiError               anything about the AMI connection
    │   ├── AmiAuthError       Asterisk refused the login (wrong user/secret, or ACL)
    │   ├── AmiPermissionError the AMI user lacks a permission the agent needs
    │   └── AmiConnectionError the TCP connection failed or was lost
    ├── OutboxError            the durable outbox cannot be opened or written
    ├── CdrError               the PBX's CDR database cannot be read (driver missing, refused, wrong table)
    └── LinkError              the websocket link to the cloud
        └── TokenRefusedError  the cloud refused the agent's token
"""


class EdgeAgentError(Exception):
    """Base of every error the edge agent raises on purpose."""


class ConfigError(EdgeAgentError):
    pass


class TraceError(EdgeAgentError):
    pass


class AmiError(EdgeAgentError):
    pass


class AmiAuthError(AmiError):
    pass


class AmiPermissionError(AmiError):
    pass


class AmiConnectionError(AmiError):
    pass


class AmiActionLostError(AmiConnectionError):
    """The connection died after the action went out: it may have run (an Originate may be ringing)."""


class OutboxError(EdgeAgentError):
    """The outbox file cannot be opened or written (disk full, permissions, corruption)."""


class CdrError(EdgeAgentError):
    """The PBX's CDR database cannot be read: its driver is not installed, it refused us, or the table is not a
    CDR table. The message says which and what to do."""


class LinkError(EdgeAgentError):
    """Anything about the websocket link to the cloud."""


class TokenRefusedError(LinkError):
    """The cloud refused the agent's token (HTTP 401/403 on the upgrade, or ``not_authorized``)."""
