"""A local API Gateway websocket API (events, limits, ``@connections``) in front of a Chalice app."""

from sandbox.apigw_local.events import ApiContext, ConnectionInfo
from sandbox.apigw_local.gateway import MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, GatewaySettings, LocalApiGateway
from sandbox.apigw_local.session import LocalSession

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_MESSAGE_BYTES",
    "ApiContext",
    "ConnectionInfo",
    "GatewaySettings",
    "LocalApiGateway",
    "LocalSession",
]
