"""The edge↔cloud contract, shared by the edge agent and the cloud (and nothing else).

Kept small and dependency-light (pydantic only) so a Lambda bundles it without the agent.
"""
