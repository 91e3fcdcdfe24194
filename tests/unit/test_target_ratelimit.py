"""Rate limiters: fixed one-minute windows, waiting, and the DynamoDB conditional counter."""

from __future__ import annotations

import threading

import boto3
import pytest

from profile_sync.adobe_target.errors import TargetRetryLater
from profile_sync.adobe_target.ratelimit import InMemoryRateLimiter, RateLimiter
from profile_sync.aws.ratelimit import DynamoDBRateLimiter
from tests.contract.conftest import FakeClock, atomic_moto_dynamodb, create_rate_table


@pytest.fixture
def table(aws):
    with atomic_moto_dynamodb():
        yield create_rate_table()


@pytest.fixture(params=["memory", "dynamodb"])
def limiter_factory(request):
    if request.param == "memory":
        return lambda limit, clock: InMemoryRateLimiter(limit, clock=clock.time, sleep=clock.sleep)
    table = request.getfixturevalue("table")
    return lambda limit, clock: DynamoDBRateLimiter(table, limit, clock.time, sleep=clock.sleep)


def test_windows_and_waits(limiter_factory):
    clock = FakeClock(start=6000.0 + 15)  # 15 s into a window
    limiter = limiter_factory(3, clock)
    assert isinstance(limiter, RateLimiter)
    assert [limiter.try_acquire("demo") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire("demo") == pytest.approx(45.0)
    assert limiter.try_acquire("other") == 0.0  # per client
    clock.advance(45)
    assert limiter.try_acquire("demo") == 0.0


def test_acquire_sleeps_until_the_next_window(limiter_factory):
    clock = FakeClock(start=6000.0 + 50)
    limiter = limiter_factory(1, clock)
    limiter.acquire("demo", max_wait=60)
    limiter.acquire("demo", max_wait=60)
    assert clock.sleeps == [pytest.approx(10.0)]


def test_acquire_refuses_to_wait_past_max_wait(limiter_factory):
    clock = FakeClock(start=6000.0)
    limiter = limiter_factory(1, clock)
    limiter.acquire("demo", max_wait=0)
    with pytest.raises(TargetRetryLater) as caught:
        limiter.acquire("demo", max_wait=30)
    assert caught.value.retry_after_seconds == pytest.approx(60.0)
    assert clock.sleeps == []


def test_no_window_exceeds_the_limit_under_concurrency(limiter_factory):
    clock = FakeClock(start=6000.0)
    limiter = limiter_factory(50, clock)
    for _window in range(3):
        taken = []

        def grab(limiter=limiter, taken=taken):
            for _ in range(20):
                if limiter.try_acquire("demo") == 0.0:
                    taken.append(1)

        threads = [threading.Thread(target=grab) for _ in range(8)]  # 160 tries for 50 slots
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(taken) == 50
        clock.advance(60)


def test_dynamodb_items_and_ttl(table):
    clock = FakeClock(start=6000.0 + 5)
    limiter = DynamoDBRateLimiter(table, 2, clock.time)
    limiter.try_acquire("demo")
    limiter.try_acquire("demo")
    limiter.try_acquire("demo")
    item = table.get_item(Key={"pk": "RATE#demo", "sk": "6000"})["Item"]
    assert int(item["calls"]) == 2
    assert int(item["expiresAt"]) >= 6060


def test_dynamodb_limiter_by_table_name(table):
    limiter = DynamoDBRateLimiter("profile-sync-jobs", 1, FakeClock().time)
    assert limiter.try_acquire("demo") == 0.0
    assert limiter.try_acquire("demo") > 0


def test_other_dynamodb_errors_propagate(aws):
    limiter = DynamoDBRateLimiter(boto3.resource("dynamodb", region_name="us-east-1").Table("missing"), 1)
    with pytest.raises(Exception, match="ResourceNotFound"):
        limiter.try_acquire("demo")


def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        InMemoryRateLimiter(0)


def test_polls_take_only_their_share_so_submits_keep_a_reserve(limiter_factory):
    """50 calls a minute, polls 80%: however many batches poll, 10 slots stay free for submits."""
    clock = FakeClock(start=6000.0 + 20)
    limiter = limiter_factory(50, clock)
    polls = [limiter.try_acquire("demo", share=0.8) for _ in range(60)]
    assert polls.count(0.0) == 40
    assert polls[40] == pytest.approx(40.0)  # the next window
    submits = [limiter.try_acquire("demo") for _ in range(11)]
    assert submits.count(0.0) == 10 and submits[10] > 0  # the whole budget, never more
    clock.advance(40)
    assert limiter.try_acquire("demo", share=0.8) == 0.0


def test_submits_first_leave_polls_only_what_remains_of_their_share(limiter_factory):
    clock = FakeClock(start=6000.0)
    limiter = limiter_factory(50, clock)
    assert [limiter.try_acquire("demo") for _ in range(45)] == [0.0] * 45
    assert limiter.try_acquire("demo", share=0.8) > 0  # 45 taken: above the polls' 40
    assert [limiter.try_acquire("demo") for _ in range(5)] == [0.0] * 5


def test_a_tiny_share_still_lets_one_poll_through(limiter_factory):
    clock = FakeClock(start=6000.0)
    limiter = limiter_factory(2, clock)
    assert limiter.try_acquire("demo", share=0.1) == 0.0
    assert limiter.try_acquire("demo", share=0.1) > 0
    assert limiter.try_acquire("demo") == 0.0
