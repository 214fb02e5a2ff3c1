"""How the cloud gets AWS clients: through a factory, ``boto3.client`` by default, that tests replace."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["ClientFactory"]


class ClientFactory(Protocol):
    """``boto3.client``'s shape, as far as the cloud uses it."""

    def __call__(
        self, service_name: str, *, region_name: str, endpoint_url: str | None = None, config: Any = None
    ) -> Any: ...
