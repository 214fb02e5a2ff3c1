"""The recordings bucket: created by cloud-local and tests like the tables (``infra`` does it in AWS)."""

from __future__ import annotations

from typing import Any

from cloud.storage.dynamo import error_code

__all__ = ["LIFECYCLE", "create_app_buckets", "create_bucket"]

#: A safety net under the per-tenant expiry sweep (``cloud.recordings.retention``): nothing outlives the longest
#: retention a tenant can set (3650 days) by more than a month, and abandoned multipart uploads are cleaned.
LIFECYCLE: dict[str, Any] = {
    "Rules": [
        {
            "ID": "longest-retention",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "Expiration": {"Days": 3680},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    ]
}


def create_bucket(s3: Any, name: str, region: str) -> bool:
    """Create the private bucket with its lifecycle and public access blocked; ``False`` if it existed."""
    try:
        s3.head_bucket(Bucket=name)
        return False  # (us-east-1 answers CreateBucket on an existing own bucket with 200, so ask first)
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except Exception as exc:
        if error_code(exc) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False
        raise
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration=LIFECYCLE)
    return True


def create_app_buckets(s3: Any) -> list[str]:
    """cloud-local's bucket creator: the recordings bucket the app's settings (environment) name."""
    from cloud.settings import Settings

    settings = Settings.from_env()
    return [settings.bucket] if create_bucket(s3, settings.bucket, settings.region) else []
