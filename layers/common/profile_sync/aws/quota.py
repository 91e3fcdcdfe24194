"""Quota counters in the JobsTable.

Daily rows: `pk=QUOTA#<client>, sk=<UTC day>`, one conditional update that adds the rows and the
reservation id together, so concurrent jobs never go over and a retried reservation is found, not
counted again. Rolling single updates: `pk=SINGLEQUOTA#<client>, sk=ROLLING`, hourly buckets in one
item, updated with optimistic locking on a version number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import ClientError

from profile_sync.aws.jobs import plain
from profile_sync.quota import (
    DAY,
    QuotaDecision,
    check_fits,
    hour_bucket,
    rolling_wait_seconds,
    seconds_until_next_utc_day,
    utc_day,
)

if TYPE_CHECKING:  # the stubs are a development dependency, not in the layer
    from mypy_boto3_dynamodb import DynamoDBServiceResource

OFF = "off"


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in (
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
    )


class DynamoDailyRowQuota:
    def __init__(self, table_name: str, limit: int, resource: DynamoDBServiceResource | None = None) -> None:
        self.table = (resource or boto3.resource("dynamodb")).Table(table_name)
        self.limit = limit

    def reserve(self, client_code: str, reservation_id: str, rows: int, now: float) -> QuotaDecision:
        if not self.limit:
            return QuotaDecision(True, 0, 0, 0, OFF)
        check_fits(rows, self.limit, "rows")
        day = utc_day(now)
        key = {"pk": f"QUOTA#{client_code}", "sk": day}
        try:
            item = self.table.update_item(
                Key=key,
                UpdateExpression="ADD #used :rows, #ids :id SET #exp = if_not_exists(#exp, :exp)",
                ConditionExpression=(
                    "(attribute_not_exists(#used) OR #used <= :room) AND NOT contains(#ids, :one)"
                ),
                ExpressionAttributeNames={"#used": "used", "#ids": "reservations", "#exp": "expiresAt"},
                ExpressionAttributeValues={
                    ":rows": rows,
                    ":id": {reservation_id},
                    ":one": reservation_id,
                    ":room": self.limit - rows,
                    ":exp": int(now) + 3 * DAY,
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
            return QuotaDecision(True, 0, plain(item["used"]), self.limit, day)
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        current = plain(self.table.get_item(Key=key, ConsistentRead=True).get("Item") or {})
        used = current.get("used", 0)
        if reservation_id in current.get("reservations", set()):
            return QuotaDecision(True, 0, used, self.limit, day)  # reserved by an earlier try
        return QuotaDecision(False, seconds_until_next_utc_day(now), used, self.limit, day)


class DynamoRollingQuota:
    """Single updates: at most `limit` calls in any 24 h, counted in hourly buckets."""

    def __init__(
        self,
        table_name: str,
        limit: int,
        resource: DynamoDBServiceResource | None = None,
        max_tries: int = 20,
    ) -> None:
        self.table = (resource or boto3.resource("dynamodb")).Table(table_name)
        self.limit = limit
        self.max_tries = max_tries

    def reserve(self, client_code: str, reservation_id: str, calls: int, now: float) -> QuotaDecision:
        if not self.limit:
            return QuotaDecision(True, 0, 0, 0, OFF)
        check_fits(calls, self.limit, "single updates")
        key = {"pk": f"SINGLEQUOTA#{client_code}", "sk": "ROLLING"}
        for _ in range(self.max_tries):
            item = plain(self.table.get_item(Key=key, ConsistentRead=True).get("Item") or {})
            version = item.get("version", 0)
            buckets = {int(k): v for k, v in item.get("buckets", {}).items() if int(k) > now - DAY}
            recent = [r for r in item.get("recent", []) if r[1] > now - DAY]
            used = sum(buckets.values())
            if any(r[0] == reservation_id for r in recent):
                return QuotaDecision(True, 0, used, self.limit, "rolling-24h")
            if used + calls > self.limit:
                wait = rolling_wait_seconds(buckets, now, calls, self.limit)
                return QuotaDecision(False, wait, used, self.limit, "rolling-24h")
            bucket = hour_bucket(now)
            buckets[bucket] = buckets.get(bucket, 0) + calls
            recent.append([reservation_id, int(now)])
            try:
                self.table.put_item(
                    Item={
                        **key,
                        "buckets": {str(k): v for k, v in buckets.items()},
                        "recent": recent,
                        "version": version + 1,
                        "expiresAt": int(now) + 2 * DAY,
                    },
                    ConditionExpression="attribute_not_exists(#v) OR #v = :v",
                    ExpressionAttributeNames={"#v": "version"},
                    ExpressionAttributeValues={":v": version},
                )
                return QuotaDecision(True, 0, used + calls, self.limit, "rolling-24h")
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
        raise RuntimeError("single-update quota: too much contention, try again")
