"""``license-admin``: the vendor's commands, run with the vendor's AWS credentials against the server's tables.

    license-admin list
    license-admin show MEMBER_ID                       # the license and the usage its backend reported last
    license-admin issue MEMBER_ID --plan business --days 365 [--users N] [--agents N]
    license-admin extend MEMBER_ID --days 30
    license-admin plan MEMBER_ID enterprise [--users N] [--agents N]
    license-admin revoke MEMBER_ID                     # takes effect when the portal's current lease expires
    license-admin key create --role backend|admin --name NAME   # prints the key once
    license-admin key list | key revoke KEY_ID
    license-admin signing-key generate [--kid KID]     # a new Ed25519 pair as environment lines

``AWS_ENDPOINT_URL_DYNAMODB`` points it at a local DynamoDB (cloud-local's moto); ``LICENSE_TABLE_PREFIX``
picks the stage's tables. The same operations are on the admin API (``/v1/admin/...``) for remote use.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from license_protocol import encode_private_key, encode_public_key, generate_signing_key
from license_server import api_keys, licenses
from license_server.errors import LicenseServerError
from license_server.runtime import Runtime
from license_server.settings import Settings
from license_server.tables import create_tables

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="license-admin", description="Manage pbxlink licenses and API keys.")
    parser.add_argument("--table-prefix", help="default: LICENSE_TABLE_PREFIX or pbxlink-license-dev-")
    parser.add_argument("--create-tables", action="store_true", help="create missing tables first")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every license")
    commands.add_parser("show", help="one license with its last reported usage").add_argument("member_id")
    issue = commands.add_parser("issue", help="a paid license (replaces a trial, un-revokes)")
    issue.add_argument("member_id")
    issue.add_argument("--plan", required=True)
    issue.add_argument("--days", type=int, required=True)
    extend = commands.add_parser("extend", help="add days to a license")
    extend.add_argument("member_id")
    extend.add_argument("--days", type=int, required=True)
    plan = commands.add_parser("plan", help="move a license to another plan")
    plan.add_argument("member_id")
    plan.add_argument("plan")
    for sub in (issue, plan):
        sub.add_argument("--users", type=int, help="users_with_cards limit (default: the plan's)")
        sub.add_argument("--agents", type=int, help="agents limit (default: the plan's)")
    commands.add_parser("revoke", help="stop leasing to a portal").add_argument("member_id")
    key = commands.add_parser("key", help="API keys").add_subparsers(dest="action", required=True)
    create = key.add_parser("create", help="a new API key, printed once")
    create.add_argument("--role", choices=api_keys.ROLES, required=True)
    create.add_argument("--name", required=True, help="who holds it, e.g. the cloud deployment")
    key.add_parser("list", help="every API key (ids, never secrets)")
    key.add_parser("revoke", help="revoke an API key").add_argument("key_id")
    signing = commands.add_parser("signing-key", help="signing keys").add_subparsers(dest="action", required=True)
    signing.add_parser("generate", help="print a new key pair").add_argument("--kid", default=None)
    return parser


def _show(lic: licenses.License) -> str:
    return json.dumps(lic.model_dump(mode="json"), indent=2, sort_keys=True)


def _date(epoch: int | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M")


def main(argv: Sequence[str] | None = None, runtime: Runtime | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "signing-key":
        key = generate_signing_key()
        kid = args.kid or datetime.now(UTC).strftime("%Y-%m")
        print(f"LICENSE_SIGNING_KEY={kid}:{encode_private_key(key)}      # the license server only; keep secret")
        print(f"LICENSE_PUBLIC_KEYS={kid}:{encode_public_key(key.public_key())}   # the cloud (append during rotation)")
        return 0
    settings = Settings.from_env()
    if args.table_prefix is not None:
        settings = dataclasses.replace(settings, table_prefix=args.table_prefix)
    rt = runtime or Runtime(settings)
    if args.create_tables:
        create_tables(rt.dynamodb, rt.settings.table_prefix)
    try:
        if args.command == "list":
            print(f"{'member_id':<34} {'plan':<11} {'status':<8} {'until':<17} {'last check':<17} usage")
            for lic in sorted(licenses.list_licenses(rt), key=lambda lic: lic.member_id):
                usage = f"{lic.usage.users_with_cards} users, {lic.usage.agents} agents" if lic.usage else "-"
                status = "trial" if lic.trial and lic.status == "active" else lic.status
                print(
                    f"{lic.member_id:<34} {lic.plan:<11} {status:<8} {_date(lic.valid_until):<17} "
                    f"{_date(lic.last_check_at):<17} {usage}"
                )
        elif args.command == "show":
            print(_show(licenses.get_license(rt, args.member_id)))
        elif args.command == "issue":
            print(
                _show(
                    licenses.issue(
                        rt, args.member_id, args.plan, args.days, users_with_cards=args.users, agents=args.agents
                    )
                )
            )
        elif args.command == "extend":
            print(_show(licenses.extend(rt, args.member_id, args.days)))
        elif args.command == "plan":
            print(
                _show(
                    licenses.change_plan(rt, args.member_id, args.plan, users_with_cards=args.users, agents=args.agents)
                )
            )
        elif args.command == "revoke":
            print(_show(licenses.revoke(rt, args.member_id)))
            print("Revoked: the portal keeps its current lease until it expires, then gets no other.", file=sys.stderr)
        elif args.action == "create":
            key_info, secret = api_keys.create_key(rt, args.role, args.name)
            print(f"key_id: {key_info.key_id}\nrole:   {key_info.role}\nkey:    {secret}")
            print("The key is shown only this once.", file=sys.stderr)
        elif args.action == "list":
            print(f"{'key_id':<14} {'role':<8} {'state':<8} {'created':<20} name")
            for item in api_keys.list_keys(rt):
                state = "revoked" if item.revoked_at else "active"
                print(f"{item.key_id:<14} {item.role:<8} {state:<8} {item.created_at:<20} {item.name}")
        elif args.action == "revoke":
            print(f"revoked {api_keys.revoke_key(rt, args.key_id, rt.clock()).key_id}")
    except LicenseServerError as exc:
        print(f"license-admin: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
