"""The CloudFormation merged into ``chalice package``'s output (``--merge-template``): what Chalice does not make.

* the DynamoDB tables of ``TABLES`` (properties one to one, plus the stage's names, TTL and point-in-time
  recovery), kept when the stack is deleted;
* the cloud's recordings bucket: private, encrypted, TLS only, with the stage's lifecycle rules;
* one Secrets Manager secret per secret the app reads, created with a placeholder the operator replaces
  (values never pass through the repository or the template);
* environment variables the functions get from the stack (``SAM Globals``): the secrets' ARNs, the bucket,
  the websocket API id, and the values of the stack's parameters.
"""

from __future__ import annotations

from typing import Any, Final

from infra.apps import AppSpec, stage_options
from infra.policy import table_logical_id

__all__ = ["SECRET_PLACEHOLDER", "merge_template", "secret_name"]

#: The value a secret is created with. The apps treat it as unset (and say so in their log).
SECRET_PLACEHOLDER: Final = "PBXLINK_UNSET"
_RETAIN: Final = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}

#: Stack parameters -> the environment variable each fills, for the cloud.
CLOUD_PARAMETERS: Final[dict[str, tuple[str, str]]] = {
    "B24ClientId": ("B24_CLIENT_ID", "The Bitrix24 app's client id (public)"),
    "PublicBaseUrl": ("PUBLIC_BASE_URL", "This API's base URL as Bitrix24 sees it (custom domain or EndpointURL)"),
    "LicenseServerUrl": ("LICENSE_SERVER_URL", "The license server's base URL (its stack's EndpointURL)"),
    "LicensePublicKeys": ("LICENSE_PUBLIC_KEYS", "kid:base64 public keys leases are verified with, comma-separated"),
}


def secret_name(stage: str, name: str) -> str:
    return f"pbxlink/{stage}/{name}"


def _table(app: AppSpec, stage: str, key: str, pitr: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {"TableName": app.table_prefix(stage) + key, **app.tables[key]}
    if key in app.ttl_attributes:
        properties["TimeToLiveSpecification"] = {"AttributeName": app.ttl_attributes[key], "Enabled": True}
    properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": pitr}
    properties["SSESpecification"] = {"SSEEnabled": True}
    return {"Type": "AWS::DynamoDB::Table", **_RETAIN, "Properties": properties}


def _recordings(app: AppSpec, stage: str) -> dict[str, Any]:
    options = stage_options(stage)
    rules: list[dict[str, Any]] = [
        {
            "Id": "abort-incomplete-uploads",
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
        {"Id": "expire-recordings", "Status": "Enabled", "ExpirationInDays": options.recordings_expire_days},
    ]
    if 0 < options.recordings_infrequent_access_days < options.recordings_expire_days:
        rules.append(
            {
                "Id": "recordings-to-infrequent-access",
                "Status": "Enabled",
                "Transitions": [
                    {"StorageClass": "STANDARD_IA", "TransitionInDays": options.recordings_infrequent_access_days}
                ],
            }
        )
    bucket = {
        "Type": "AWS::S3::Bucket",
        **_RETAIN,
        "Properties": {
            # globally unique: the account and region are part of the name
            "BucketName": {"Fn::Sub": app.table_prefix(stage) + "recordings-${AWS::AccountId}-${AWS::Region}"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {"Rules": rules},
        },
    }
    tls_only = {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": {"Ref": "RecordingsBucket"},
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TlsOnly",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [
                            {"Fn::GetAtt": ["RecordingsBucket", "Arn"]},
                            {"Fn::Sub": "${RecordingsBucket.Arn}/*"},
                        ],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
        },
    }
    return {"RecordingsBucket": bucket, "RecordingsBucketPolicy": tls_only}


def merge_template(app: AppSpec, stage: str) -> dict[str, Any]:
    """The template for ``chalice package --merge-template`` (JSON-ready)."""
    options = stage_options(stage)
    resources: dict[str, Any] = {
        table_logical_id(key): _table(app, stage, key, options.point_in_time_recovery) for key in app.tables
    }
    variables: dict[str, Any] = {}
    for secret in app.secrets:
        resources[secret.logical_id] = {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "Name": secret_name(stage, secret.name),
                "Description": f"{secret.description} ({app.app_name}, stage {stage}); "
                f"set with: aws secretsmanager put-secret-value --secret-id {secret_name(stage, secret.name)}",
                "SecretString": SECRET_PLACEHOLDER,
            },
        }
        variables[f"{secret.variable}_ARN"] = {"Ref": secret.logical_id}
    parameters: dict[str, Any] = {}
    outputs: dict[str, Any] = {
        f"{secret.logical_id}Arn": {"Value": {"Ref": secret.logical_id}} for secret in app.secrets
    }
    if app.recordings:
        resources.update(_recordings(app, stage))
        variables["PBXLINK_RECORDINGS_BUCKET"] = {"Ref": "RecordingsBucket"}
        outputs["RecordingsBucketName"] = {"Value": {"Ref": "RecordingsBucket"}}
    if app.websocket:
        variables["WS_API_ID"] = {"Ref": "WebsocketAPI"}
        variables["WS_STAGE"] = "api"
        # where agents connect (EDGE_CLOUD_URL): shown to the portal's admin by the settings pages
        variables["AGENT_WS_URL"] = {
            "Fn::Sub": "wss://${WebsocketAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/api"
        }
    if app.key == "cloud":
        configured = app.environment(stage)
        for parameter, (variable, description) in CLOUD_PARAMETERS.items():
            if variable in configured:  # the stage's config.json sets it: it wins
                continue
            parameters[parameter] = {"Type": "String", "Default": "", "Description": description}
            variables[variable] = {"Ref": parameter}
    # Chalice (1.34) names the REST handler's log group after ``${ApiHandler}``, but the function is ``APIHandler``.
    resources["ApiHandlerLogGroup"] = {"Properties": {"LogGroupName": {"Fn::Sub": "/aws/lambda/${APIHandler}"}}}
    template: dict[str, Any] = {
        "Globals": {"Function": {"Environment": {"Variables": variables}}},
        "Resources": resources,
        "Outputs": outputs,
    }
    if parameters:
        template["Parameters"] = parameters
    return template
