"""DynamoDB-backed limiter: the 50 calls/minute per client, shared by every concurrent Lambda.

One item per client and fixed one-minute window (pk="RATE#<clientCode>", sk="<window start>"),
incremented with a conditional ADD so the count can never pass the limit whatever the concurrency.
A poll's condition is the lower ceiling of its share: submits keep the rest of the window.
Items expire through the table's TTL attribute `expiresAt`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import ClientError

from profile_sync.adobe_target.ratelimit import WINDOW_SECONDS, WindowedLimiter, ceiling, window_start

TTL_SECONDS = 3600  # keep a window an hour for inspection, then let TTL remove it


class DynamoDBRateLimiter(WindowedLimiter):
    def __init__(
        self,
        table: str | Any,
        calls_per_minute: int = 50,
        clock: Callable[[], float] = time.time,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(calls_per_minute, clock=clock, sleep=sleep)
        self.table = boto3.resource("dynamodb").Table(table) if isinstance(table, str) else table

    def try_acquire(self, key: str, *, share: float = 1.0) -> float:
        now = self.clock()
        start = window_start(now)
        try:
            self.table.update_item(
                Key={"pk": f"RATE#{key}", "sk": str(start)},
                UpdateExpression="ADD calls :one SET expiresAt = if_not_exists(expiresAt, :ttl)",
                ConditionExpression="attribute_not_exists(calls) OR calls < :limit",
                ExpressionAttributeValues={
                    ":one": 1,
                    ":limit": ceiling(self.calls_per_minute, share),
                    ":ttl": start + WINDOW_SECONDS + TTL_SECONDS,
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return max(start + WINDOW_SECONDS - now, 0.001)
        return 0.0
