"""Quotas: the daily row quota per client and UTC day, the rolling 24 h single-update quota."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import boto3
import pytest

from profile_sync.aws.jobs import plain
from profile_sync.aws.quota import DynamoDailyRowQuota, DynamoRollingQuota
from profile_sync.quota import (
    DAY,
    HOUR,
    QuotaTooSmall,
    check_fits,
    hour_bucket,
    rolling_wait_seconds,
    seconds_until_next_utc_day,
    utc_day,
)
from profile_sync_local.stack.aws_server import atomic_dynamodb_writes
from profile_sync_local.stack.project import table_definition

REGION = "us-east-1"
TABLE = "jobs"
NOON = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()


def at(hour: int, minute: int = 0, second: int = 0, day: int = 28) -> float:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC).timestamp()


# ------------------------------------------------------------------------------------- pure rules
def test_utc_day_and_the_wait_until_the_next_one():
    assert utc_day(at(23, 59, 59)) == "2026-11-28"
    assert utc_day(at(0, day=29)) == "2026-11-29"
    # A minute past midnight, so clocks a little apart agree the day has turned.
    assert seconds_until_next_utc_day(at(23, 59, 30)) == 30 + 60
    assert seconds_until_next_utc_day(at(0, day=28)) == DAY + 60
    assert utc_day(at(23, 59, 30) + seconds_until_next_utc_day(at(23, 59, 30))) == "2026-11-29"


def test_hour_buckets():
    assert hour_bucket(at(12, 59, 59)) == at(12)
    assert hour_bucket(at(13)) == at(13)


def test_rolling_wait_is_until_enough_old_buckets_leave_the_window():
    now = at(12)
    buckets = {int(at(1)): 4, int(at(3)): 4, int(at(11)): 2}  # 10 used of 10
    # 1 more: the 01:00 bucket leaves at 01:00 next day (13 h), plus a minute.
    assert rolling_wait_seconds(buckets, now, 1, 10) == 13 * HOUR + 60
    # 5 more: 01:00 and 03:00 must both leave.
    assert rolling_wait_seconds(buckets, now, 5, 10) == 15 * HOUR + 60
    # A bucket about to leave: its last second, plus the minute.
    assert rolling_wait_seconds({int(now - DAY + 1): 10}, now, 1, 10) == 61


def test_a_reservation_larger_than_the_quota_can_never_fit():
    check_fits(10, 10, "rows")
    check_fits(10**9, 0, "rows")  # quota off
    with pytest.raises(QuotaTooSmall, match="lower the batch size"):
        check_fits(11, 10, "rows")


# ------------------------------------------------------------------------------------- DynamoDB
@pytest.fixture
def table(aws):
    boto3.client("dynamodb", region_name=REGION).create_table(**table_definition("JobsTable", TABLE))
    yield boto3.resource("dynamodb", region_name=REGION).Table(TABLE)


def quota_item(table, day: str = "2026-11-28", client: str = "acme") -> dict:
    return plain(
        table.get_item(Key={"pk": f"QUOTA#{client}", "sk": day}, ConsistentRead=True).get("Item") or {}
    )


def test_daily_quota_grants_up_to_the_limit_and_then_says_how_long_to_wait(table):
    quota = DynamoDailyRowQuota(TABLE, 10)
    assert quota.reserve("acme", "job1#1", 6, NOON).granted
    decision = quota.reserve("acme", "job1#2", 4, NOON)
    assert (decision.granted, decision.used, decision.limit, decision.window) == (True, 10, 10, "2026-11-28")
    refused = quota.reserve("acme", "job2#1", 1, NOON)
    assert not refused.granted
    assert refused.wait_seconds == 12 * HOUR + 60
    assert refused.used == 10
    assert quota_item(table)["used"] == 10
    assert quota_item(table)["reservations"] == {"job1#1", "job1#2"}
    # The next UTC day starts from zero; other clients have their own counter.
    assert quota.reserve("acme", "job2#1", 1, NOON + refused.wait_seconds).used == 1
    assert quota.reserve("other", "job3#1", 10, NOON).granted


def test_a_retried_reservation_is_found_not_counted_again(table):
    quota = DynamoDailyRowQuota(TABLE, 10)
    first = quota.reserve("acme", "job1#1", 6, NOON)
    again = quota.reserve("acme", "job1#1", 6, NOON + 5)
    assert first.granted and again.granted
    assert again.used == 6
    # Even when the day is full by then.
    quota.reserve("acme", "job1#2", 4, NOON)
    assert quota.reserve("acme", "job1#1", 6, NOON).granted
    assert quota_item(table)["used"] == 10


def test_a_refused_reservation_is_not_recorded(table):
    quota = DynamoDailyRowQuota(TABLE, 5)
    quota.reserve("acme", "job1#1", 5, NOON)
    for _ in range(3):
        assert not quota.reserve("acme", "job2#1", 2, NOON).granted
    assert quota_item(table) | {"expiresAt": 0} == {
        "pk": "QUOTA#acme",
        "sk": "2026-11-28",
        "used": 5,
        "reservations": {"job1#1"},
        "expiresAt": 0,
    }


@pytest.fixture
def atomic_writes():
    with atomic_dynamodb_writes():
        yield


@pytest.mark.usefixtures("atomic_writes")
def test_concurrent_reservations_never_go_over_the_limit(table):
    # DynamoDB applies each conditional write to an item atomically; moto needs to be told to
    # (the threads still interleave between calls).
    quota = DynamoDailyRowQuota(TABLE, 20)
    granted: list[str] = []
    barrier = threading.Barrier(12)

    def reserve(n: int) -> None:
        barrier.wait()
        if quota.reserve("acme", f"job{n}#1", 3, NOON).granted:
            granted.append(f"job{n}#1")

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 6  # 6 * 3 = 18 <= 20 < 21
    assert quota_item(table)["used"] == 18
    assert quota_item(table)["reservations"] == set(granted)


def test_daily_quota_off_and_too_small(table):
    assert DynamoDailyRowQuota(TABLE, 0).reserve("acme", "j#1", 10**7, NOON).granted
    assert quota_item(table) == {}
    with pytest.raises(QuotaTooSmall):
        DynamoDailyRowQuota(TABLE, 10).reserve("acme", "j#1", 11, NOON)


def test_rolling_quota_counts_calls_in_any_24_hours(table):
    quota = DynamoRollingQuota(TABLE, 10)
    assert quota.reserve("acme", "j#1#0", 6, at(1, 30)).granted
    assert quota.reserve("acme", "j#2#0", 4, at(12)).granted
    refused = quota.reserve("acme", "j#3#0", 3, at(20))
    assert not refused.granted and refused.used == 10 and refused.window == "rolling-24h"
    # The 01:00 bucket leaves the window at 01:00 the next day.
    assert at(20) + refused.wait_seconds == at(1, 1, day=29)
    later = quota.reserve("acme", "j#3#0", 3, at(20) + refused.wait_seconds)
    assert later.granted and later.used == 7


def test_rolling_quota_reservations_are_idempotent(table):
    quota = DynamoRollingQuota(TABLE, 10)
    assert quota.reserve("acme", "j#1#0", 6, at(1)).used == 6
    assert quota.reserve("acme", "j#1#0", 6, at(2)).used == 6
    assert quota.reserve("acme", "j#2#0", 4, at(3)).used == 10
    assert quota.reserve("acme", "j#1#0", 6, at(4)).granted  # found, even with the window full


def test_rolling_quota_off_and_too_small(table):
    assert DynamoRollingQuota(TABLE, 0).reserve("acme", "j#1#0", 10**7, NOON).granted
    with pytest.raises(QuotaTooSmall):
        DynamoRollingQuota(TABLE, 10).reserve("acme", "j#1#0", 11, NOON)
