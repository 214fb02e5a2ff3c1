"""The edge agent's exceptions, one hierarchy.

::

    EdgeAgentError
    ├── ConfigError            a setting is missing or invalid; the message names it
    ├── TraceError             a trace file cannot be read or written
    └── AmiError               anything about the AMI connection
        ├── AmiAuthError       Asterisk refused the login (wrong user/secret, or ACL)
        ├── AmiPermissionError the AMI user lacks a permission the agent needs
        └── AmiConnectionError the TCP connection failed or was lost
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
