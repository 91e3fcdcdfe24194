"""Job and batch records in the pk/sk JobsTable.

Layout: job `pk=JOB#<jobId>, sk=JOB` (listed newest first through gsi1: `gsi1pk=JOBS`,
`gsi1sk=<createdAt>#<jobId>`), its batches `pk=JOB#<jobId>, sk=BATCH#<00001>`. Every write sets
`expiresAt` (the table's TTL attribute) to the job retention past now: DynamoDB deletes a record that
many days after its last change, as S3's lifecycle rule deletes the job's files under jobs/.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from profile_sync import clock
from profile_sync.model import BatchRecord, BatchStatus, JobRecord

if TYPE_CHECKING:  # the stubs are a development dependency, not in the layer
    from mypy_boto3_dynamodb import DynamoDBServiceResource
    from mypy_boto3_dynamodb.type_defs import (
        QueryInputTableQueryTypeDef,
        UpdateItemInputTableUpdateItemTypeDef,
    )

JOB_SK = "JOB"
TTL_ATTRIBUTE = "expiresAt"  # the JobsTable's TimeToLiveSpecification
DAY_SECONDS = 24 * 3600


def job_key(job_id: str) -> dict[str, str]:
    return {"pk": f"JOB#{job_id}", "sk": JOB_SK}


def batch_key(job_id: str, index: int) -> dict[str, str]:
    return {"pk": f"JOB#{job_id}", "sk": f"BATCH#{index:05d}"}


def plain(value: Any) -> Any:
    """DynamoDB gives numbers back as Decimal: turn them into int/float for JSON and callers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _strip_keys(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: plain(v) for k, v in item.items() if k not in ("pk", "sk", "gsi1pk", "gsi1sk", TTL_ATTRIBUTE)}


class DynamoJobStore:
    def __init__(
        self, table_name: str, resource: DynamoDBServiceResource | None = None, *, retention_days: int = 0
    ) -> None:
        """retention_days: records expire that long after their last write (0: never, for readers)."""
        self.table = (resource or boto3.resource("dynamodb")).Table(table_name)
        self.retention_days = retention_days

    def _expiry(self) -> dict[str, int]:
        if not self.retention_days:
            return {}
        return {TTL_ATTRIBUTE: int(clock.now()) + self.retention_days * DAY_SECONDS}

    def create_job(self, job: JobRecord) -> bool:
        item: dict[str, Any] = {
            **job_key(job["jobId"]),
            "gsi1pk": "JOBS",
            "gsi1sk": f"{job['createdAt']}#{job['jobId']}",
            **job,
            **self._expiry(),
        }
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get_job(self, job_id: str) -> JobRecord | None:
        item = self.table.get_item(Key=job_key(job_id), ConsistentRead=True).get("Item")
        # The record holds what create_job and update_job wrote: a JobRecord.
        return cast(JobRecord, _strip_keys(item)) if item else None

    def update_job(
        self, job_id: str, changes: Mapping[str, Any], *, expect: Mapping[str, Any] | None = None
    ) -> bool:
        """Set fields on the job record; with `expect`, only if those fields hold those values."""
        return self._update(job_key(job_id), changes, expect)

    def _update(
        self, key: dict[str, str], changes: Mapping[str, Any], expect: Mapping[str, Any] | None = None
    ) -> bool:
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return True
        changes.update(self._expiry())
        names = {f"#f{i}": name for i, name in enumerate(changes)}
        values = {f":v{i}": value for i, value in enumerate(changes.values())}
        kwargs: UpdateItemInputTableUpdateItemTypeDef = {
            "Key": key,
            "UpdateExpression": "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(changes))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if expect:
            conditions = []
            for i, (name, value) in enumerate(expect.items()):
                names[f"#e{i}"] = name
                values[f":e{i}"] = value
                conditions.append(
                    f"#e{i} = :e{i}" if value else f"(attribute_not_exists(#e{i}) OR #e{i} = :e{i})"
                )
            kwargs["ConditionExpression"] = " AND ".join(conditions)
        try:
            self.table.update_item(**kwargs)
        except ClientError as exc:
            if expect and exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get_batch(self, job_id: str, index: int) -> BatchRecord | None:
        item = self.table.get_item(Key=batch_key(job_id, index), ConsistentRead=True).get("Item")
        return cast(BatchRecord, _strip_keys(item)) if item else None

    def update_batch(
        self,
        job_id: str,
        index: int,
        changes: Mapping[str, Any],
        *,
        expect: Mapping[str, Any] | None = None,
    ) -> bool:
        """Set fields on a batch record; with `expect`, only if those fields hold those values."""
        return self._update(batch_key(job_id, index), changes, expect)

    def put_batches(self, job_id: str, batches: Sequence[Mapping[str, Any]]) -> None:
        with self.table.batch_writer() as writer:
            for batch in batches:
                writer.put_item(
                    Item={
                        **batch_key(job_id, batch["batchIndex"]),
                        "status": BatchStatus.PENDING,
                        **batch,
                        **self._expiry(),
                    }
                )

    def list_batches(self, job_id: str) -> list[BatchRecord]:
        items: list[BatchRecord] = []
        kwargs: QueryInputTableQueryTypeDef = {
            "KeyConditionExpression": Key("pk").eq(f"JOB#{job_id}") & Key("sk").begins_with("BATCH#")
        }
        while True:
            page = self.table.query(**kwargs)
            items.extend(cast(BatchRecord, _strip_keys(i)) for i in page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def recent_jobs(self, limit: int = 20) -> list[JobRecord]:
        page = self.table.query(
            IndexName="gsi1",
            KeyConditionExpression=Key("gsi1pk").eq("JOBS"),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [cast(JobRecord, _strip_keys(i)) for i in page["Items"]]
