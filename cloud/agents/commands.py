"""Commands to agents (click-to-call, reload) and their results, always within one tenant.

:func:`send_command` looks the agent up under the caller's tenant, so another tenant's agent id is simply
unknown; the command is recorded before it is pushed, and its result (:func:`record_result`) can only be
written by the agent it was sent to.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from cloud.clock import now_iso
from cloud.errors import AgentOffline, CommandConflict, RevokedAgent
from cloud.gateway import ConnectionGateway
from cloud.runtime import Runtime
from cloud.storage.dynamo import from_item, is_condition_failure, to_item
from wire_protocol.messages import Command, CommandResult

from . import connections
from .tokens import get_agent

__all__ = ["COMMAND_TTL_SECONDS", "CrmFinisher", "claim_crm_finish", "get_command", "record_result", "send_command"]

log = logging.getLogger(__name__)
COMMAND_TTL_SECONDS = 30 * 24 * 3600

#: Who finishes a command's Bitrix24 CALL_ID: the CRM pipeline (the PBX placed the call) or the click-to-call
#: failure path (it did not, or the call failed before the pipeline saw it).
CrmFinisher = Literal["pipeline", "failure"]


def send_command(
    rt: Runtime,
    tenant: str,
    agent_id: str,
    command: Command,
    gateway: ConnectionGateway | None = None,
    *,
    crm_call_id: str | None = None,
) -> None:
    """Push ``command`` to the agent's live connection.

    ``crm_call_id``: the Bitrix24 CALL_ID of the click-to-call this command places; the call it makes then
    finishes that CALL_ID instead of registering a new one (``cloud.crm``).

    Raises :class:`UnknownAgent` (no such agent in this tenant), :class:`RevokedAgent`, :class:`AgentOffline`
    (no live connection, or it turned out gone: the mapping is dropped), :class:`CommandConflict` (the id was
    used for another agent). Sending the same id to the same agent again is allowed: the agent runs it once.
    """
    agent = get_agent(rt, tenant, agent_id)
    if agent.revoked:
        raise RevokedAgent(agent_id)
    conn = connections.agent_connection(rt, tenant, agent_id)
    if conn is None:
        raise AgentOffline(agent_id)
    try:
        rt.dynamodb.put_item(
            TableName=rt.tables.commands,
            Item=to_item(
                {
                    "tenant": tenant,
                    "command_id": command.command_id,
                    "agent_id": agent_id,
                    "kind": command.command.kind,
                    "command": command.model_dump_json(),
                    "status": "sent",
                    "sent_at": now_iso(),
                    "expires_at": int(time.time()) + COMMAND_TTL_SECONDS,
                    "crm_call_id": crm_call_id,
                }
            ),
            ConditionExpression="attribute_not_exists(command_id) OR agent_id = :a",
            ExpressionAttributeValues=to_item({":a": agent_id}),
        )
    except Exception as exc:
        if is_condition_failure(exc):
            raise CommandConflict(command.command_id) from None
        raise
    gw = gateway or rt.gateway()
    if not gw.send(conn.connection_id, command):
        connections.drop(rt, tenant, agent_id, conn.connection_id)
        raise AgentOffline(agent_id)


def record_result(rt: Runtime, tenant: str, agent_id: str, result: CommandResult) -> bool:
    """Store an agent's ``command_result``; ``False`` if the command was sent to another agent (refused).

    A result for a command id the cloud never sent is stored too (it has no ``sent_at``): the agent saw it,
    so support should be able to.
    """
    try:
        rt.dynamodb.update_item(
            TableName=rt.tables.commands,
            Key=to_item({"tenant": tenant, "command_id": result.command_id}),
            UpdateExpression=(
                "SET agent_id = :a, #s = :done, ok = :ok, code = :code, message = :msg,"
                " call_id = :call, result_at = :now, expires_at = if_not_exists(expires_at, :exp)"
            ),
            ConditionExpression="attribute_not_exists(command_id) OR agent_id = :a",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=to_item(
                {
                    ":a": agent_id,
                    ":done": "done",
                    ":ok": result.ok,
                    ":code": result.code,
                    ":msg": result.message,
                    ":call": result.call_id or "",
                    ":now": now_iso(),
                    ":exp": int(time.time()) + COMMAND_TTL_SECONDS,
                }
            ),
        )
    except Exception as exc:
        if is_condition_failure(exc):
            log.warning("agent %s/%s sent a result for another agent's command %s", tenant, agent_id, result.command_id)
            return False
        raise
    return True


def get_command(rt: Runtime, tenant: str, command_id: str) -> dict[str, Any] | None:
    response = rt.dynamodb.get_item(
        TableName=rt.tables.commands, Key=to_item({"tenant": tenant, "command_id": command_id}), ConsistentRead=True
    )
    return from_item(response["Item"]) if "Item" in response else None


def claim_crm_finish(rt: Runtime, tenant: str, command_id: str, finisher: CrmFinisher) -> CrmFinisher | None:
    """Make ``finisher`` the one that finishes the command's ``crm_call_id``, unless the other one already is.

    Returns who owns it now (``finisher`` when the claim held or was already ours), or ``None`` when there is no
    such command. A conditional write, so the CRM pipeline and the click-to-call failure path, racing on one
    CALL_ID in different Lambdas, never both finish it (Bitrix24 would refuse the second ``finish``, and the
    pipeline would then register the call anew).
    """
    key = to_item({"tenant": tenant, "command_id": command_id})
    try:
        rt.dynamodb.update_item(
            TableName=rt.tables.commands,
            Key=key,
            UpdateExpression="SET crm_finisher = :f",
            ConditionExpression=(
                "attribute_exists(command_id) AND (attribute_not_exists(crm_finisher) OR crm_finisher = :f)"
            ),
            ExpressionAttributeValues=to_item({":f": finisher}),
        )
    except Exception as exc:
        if not is_condition_failure(exc):
            raise
        current = get_command(rt, tenant, command_id)
        if current is None:
            return None
        owner = current.get("crm_finisher")
        return "pipeline" if owner == "pipeline" else "failure" if owner == "failure" else None
    return finisher
