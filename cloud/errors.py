"""Every error the cloud raises on purpose, in one tree, so a handler can catch exactly what it can answer.

::

    CloudError                      anything this package raises deliberately
    ├── ConfigError                 a setting (environment variable) is missing or malformed
    ├── AuthError                   the caller is not allowed
    │   ├── InvalidToken            the token is unknown or malformed (HTTP 401 on $connect)
    │   └── RevokedAgent            the agent's token was revoked (HTTP 403 on $connect; ``not_authorized`` later)
    ├── UnknownAgent                no such agent in this tenant (another tenant's agent is "unknown" too)
    ├── AgentOffline                the agent has no live connection; a command cannot reach it
    ├── CommandConflict             a command id already used for another agent of the tenant
    ├── UnknownTenant               no such Bitrix24 portal installed (or it uninstalled the app)
    ├── StorageConflict             an optimistic write kept losing to concurrent writers; retry later
    └── StorageBusy                 DynamoDB left items of a batch read unread after every retry (throttled)

AWS failures (``botocore.exceptions.ClientError``) that the code cannot interpret are not wrapped: they
propagate, and the websocket handlers turn them into an ``internal`` error reply.
"""

from __future__ import annotations

__all__ = [
    "AgentOffline",
    "AuthError",
    "CloudError",
    "CommandConflict",
    "ConfigError",
    "InvalidToken",
    "RevokedAgent",
    "StorageBusy",
    "StorageConflict",
    "UnknownAgent",
    "UnknownTenant",
]


class CloudError(Exception):
    """Base of every deliberate cloud error."""


class ConfigError(CloudError):
    """A setting is missing or malformed; the message names the environment variable."""


class AuthError(CloudError):
    """The caller may not do this."""


class InvalidToken(AuthError):
    """No agent has this token (or it is not a token at all)."""


class RevokedAgent(AuthError):
    """The agent exists but its token was revoked."""


class UnknownAgent(CloudError):
    """No agent with this id in this tenant. Deliberately the same answer for another tenant's agent."""


class AgentOffline(CloudError):
    """The agent has no live websocket connection (never connected, disconnected, or the socket is gone)."""


class CommandConflict(CloudError):
    """This command id was already sent to a different agent of the tenant."""


class StorageConflict(CloudError):
    """A conditional write lost to concurrent writers more times than it retries."""


class StorageBusy(CloudError):
    """DynamoDB kept returning some of a batch read's keys unprocessed (throttling); the read is incomplete."""


class UnknownTenant(CloudError):
    """No tenant with this member id, or it has no tokens (the app was uninstalled): needs a (re)install."""
