"""PJSIP endpoints the fake PBX lists for ``PJSIPShowEndpoints`` (res_pjsip ``format_ami_endpoints``)."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.ami.framing import AmiMessage
from sandbox.ami_server.channels import ChannelTable

__all__ = ["Endpoint"]


@dataclass(frozen=True)
class Endpoint:
    """One endpoint row.

    ``aor``/``auths`` default to the endpoint name (the usual one-object-per-phone setup); ``contacts`` is
    Asterisk's ``<aor>/<uri>,`` list (empty when unregistered); ``active_channels=None`` counts the live
    ``PJSIP/<name>-...`` channels in the server's table.
    """

    name: str
    transport: str = "transport-udp"
    aor: str | None = None
    auths: str | None = None
    outbound_auths: str = ""
    contacts: str = ""
    device_state: str = "Not in use"
    active_channels: int | None = None

    def event(self, action_id: str, channels: ChannelTable) -> AmiMessage:
        event: AmiMessage = {"Event": "EndpointList"}
        if action_id:
            event["ActionID"] = action_id
        active = self.active_channels
        if active is None:
            prefix = f"PJSIP/{self.name}-"
            active = sum(1 for channel in channels.snapshot() if channel.name.startswith(prefix))
        event.update(
            ObjectType="endpoint",
            ObjectName=self.name,
            Transport=self.transport,
            Aor=self.name if self.aor is None else self.aor,
            Auths=self.name if self.auths is None else self.auths,
            OutboundAuths=self.outbound_auths,
            Contacts=self.contacts,
            DeviceState=self.device_state,
            ActiveChannels=str(active),
        )
        return event
