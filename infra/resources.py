"""Create a packaged template's stateful resources (tables, bucket, secrets) through boto3: the same properties
CloudFormation gets, applied to moto in tests (or to any endpoint boto3 is pointed at).

Only the intrinsic functions these resources use are resolved (``Ref`` to a parameter or pseudo parameter,
``Fn::Sub`` with ``${Name}`` and ``${AWS::…}``); anything else is an :class:`InfraError`, so a template that grows
beyond what this understands fails the test instead of being half applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.apps import InfraError

__all__ = ["Applied", "apply_stateful_resources", "resolve"]

STATEFUL_TYPES = ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SecretsManager::Secret")


def resolve(value: Any, names: Mapping[str, str]) -> Any:
    """Resolve ``Ref``/``Fn::Sub`` in ``value`` with ``names`` (parameters, pseudo parameters, created resources)."""
    if isinstance(value, list):
        return [resolve(item, names) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        if value["Ref"] not in names:
            raise InfraError(f"cannot resolve Ref {value['Ref']!r}")
        return names[value["Ref"]]
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                raise InfraError(f"cannot resolve ${{{match.group(1)}}} in Fn::Sub")
            return names[match.group(1)]

        return re.sub(r"\$\{([A-Za-z0-9:._]+)\}", substitute, value["Fn::Sub"])
    if any(key.startswith("Fn::") for key in value):
        raise InfraError(f"unsupported intrinsic function {sorted(value)}")
    return {key: resolve(inner, names) for key, inner in value.items()}


@dataclass
class Applied:
    """Physical names by logical id, as ``Ref`` would give them (a secret's ``Ref`` is its ARN); ``refs`` adds the
    parameters and pseudo parameters: everything :func:`resolve` needs for the rest of the template."""

    names: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


def _table(client: Any, props: dict[str, Any]) -> str:
    args = {key: value for key, value in props.items() if key not in ("TimeToLiveSpecification", "SSESpecification")}
    pitr = args.pop("PointInTimeRecoverySpecification", None)
    client.create_table(**args)
    name = props["TableName"]
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    if "TimeToLiveSpecification" in props:
        client.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
    if pitr is not None:
        client.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification=pitr)
    return str(name)


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule shape -> the S3 API's."""
    api: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": rule["ExpirationInDays"]}
    if "AbortIncompleteMultipartUpload" in rule:
        api["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    if "Transitions" in rule:
        api["Transitions"] = [
            {"Days": t["TransitionInDays"], "StorageClass": t["StorageClass"]} for t in rule["Transitions"]
        ]
    return api


def _bucket(client: Any, props: dict[str, Any], region: str) -> str:
    name = props["BucketName"]
    if region == "us-east-1":
        client.create_bucket(Bucket=name)
    else:
        client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    if "PublicAccessBlockConfiguration" in props:
        client.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
    if "BucketEncryption" in props:
        rules = [  # CloudFormation's ServerSideEncryptionByDefault is the API's ApplyServerSideEncryptionByDefault
            {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        client.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "LifecycleConfiguration" in props:
        rules = [_lifecycle_rule(rule) for rule in props["LifecycleConfiguration"]["Rules"]]
        client.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
    return str(name)


def apply_stateful_resources(
    template: Mapping[str, Any],
    client_factory: Callable[..., Any],
    *,
    region: str,
    account_id: str = "123456789012",
    parameters: Mapping[str, str] | None = None,
) -> Applied:
    """Create every table, bucket and secret of ``template`` (a packaged ``sam.json``) with ``client_factory``."""
    names = {
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    for name, spec in template.get("Parameters", {}).items():
        names[name] = (parameters or {}).get(name, spec.get("Default", ""))
    applied = Applied(refs=names)
    for logical_id, resource in template["Resources"].items():
        kind = resource.get("Type")  # a merge template may only patch a resource of Chalice's
        if kind not in STATEFUL_TYPES:
            continue
        props = resolve(resource.get("Properties", {}), names)
        if kind == "AWS::DynamoDB::Table":
            physical = _table(client_factory("dynamodb", region_name=region), props)
        elif kind == "AWS::S3::Bucket":
            physical = _bucket(client_factory("s3", region_name=region), props, region)
        else:
            secrets = client_factory("secretsmanager", region_name=region)
            physical = secrets.create_secret(
                Name=props["Name"], Description=props.get("Description", ""), SecretString=props["SecretString"]
            )["ARN"]
        applied.names[logical_id] = physical
        names[logical_id] = physical
    return applied
