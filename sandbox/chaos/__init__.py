"""The fault suite (``make chaos``): calls through the whole path while the link, the agent, AMI and Bitrix24
fail; the portal must end with every call once, with the right status, owner and recording. See
docs/reliability.md, "Fault suite"."""

from sandbox.chaos.run import ChaosPlan, ChaosResult, DisconnectPlan, run_chaos, run_disconnect

__all__ = ["ChaosPlan", "ChaosResult", "DisconnectPlan", "run_chaos", "run_disconnect"]
