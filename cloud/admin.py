"""Operator commands for agent tokens, until the Bitrix24 settings pages exist (issue 5).

    python -m cloud.admin token create --tenant T --name N    # prints the agent id and its token, once
    python -m cloud.admin token list --tenant T
    python -m cloud.admin token revoke AGENT_ID [--tenant T]

Runs against the DynamoDB boto3 is configured for: ``AWS_ENDPOINT_URL_DYNAMODB`` points it at cloud-local's
moto server; ``PBXLINK_TABLE_PREFIX`` picks the stage's tables. ``--create-tables`` creates missing tables
first (for a fresh moto server).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from cloud.agents import connections, tokens
from cloud.errors import CloudError, UnknownAgent
from cloud.runtime import Runtime
from cloud.settings import Settings
from cloud.storage.tables import create_tables

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cloud.admin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table-prefix", help="default: PBXLINK_TABLE_PREFIX or pbxlink-dev-")
    parser.add_argument("--create-tables", action="store_true", help="create missing tables first")
    groups = parser.add_subparsers(dest="group", required=True)
    token = groups.add_parser("token", help="agent tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="create an agent and print its token (shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", required=True, help="a label for the operator, e.g. the branch office")
    listing = token.add_parser("list", help="a tenant's agents")
    listing.add_argument("--tenant", required=True)
    revoke = token.add_parser("revoke", help="revoke an agent's token")
    revoke.add_argument("agent_id")
    revoke.add_argument("--tenant", help="the agent's tenant (looked up when omitted)")
    return parser


def main(argv: Sequence[str] | None = None, runtime: Runtime | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    if args.table_prefix is not None:
        settings = dataclasses.replace(settings, table_prefix=args.table_prefix)
    rt = runtime or Runtime(settings)
    if args.create_tables:
        create_tables(rt.dynamodb, rt.settings.table_prefix)
    try:
        if args.action == "create":
            agent_id, token = tokens.issue_token(rt, args.tenant, args.name)
            print(f"agent_id: {agent_id}\ntenant:   {args.tenant}\ntoken:    {token}")
            print("The token is shown only this once; give it to the agent as EDGE_TOKEN.", file=sys.stderr)
        elif args.action == "list":
            print(f"{'agent_id':<20} {'name':<24} {'state':<8} {'acked_seq':>9}  last_seen_at")
            for agent in tokens.list_agents(rt, args.tenant):
                if agent.revoked:
                    state = "revoked"
                elif connections.agent_connection(rt, agent.tenant, agent.agent_id):
                    state = "online"
                else:
                    state = "offline"
                seen = agent.last_seen_at or "-"
                print(f"{agent.agent_id:<20} {agent.name:<24} {state:<8} {agent.acked_seq:>9}  {seen}")
        elif args.action == "revoke":
            tenant = args.tenant or tokens.find_tenant(rt, args.agent_id)
            tokens.revoke(rt, tenant, args.agent_id)
            print(f"revoked {args.agent_id} ({tenant})")
            if rt.settings.ws_mgmt_endpoint or rt.settings.ws_api_id:
                if connections.kick(rt, tenant, args.agent_id):
                    print("its connection was closed")
            else:
                print("a connected agent is cut off at its next message (set WS_API_ID to close it now)")
    except UnknownAgent as exc:
        print(f"error: no agent {exc}", file=sys.stderr)
        return 2
    except (CloudError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
