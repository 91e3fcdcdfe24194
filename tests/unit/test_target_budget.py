"""No wait of the Target client passes the invocation's time; attempt counts and messages are true.

A fake session answers (no network) and a fake clock moves only when the client sleeps or a call
takes time, so "time left" is exact: the client must never sleep past time_left() - margin, and
must hand the wait to the workflow (TargetRetryLater with the delay) instead.
"""

from __future__ import annotations

import random

import pytest
import requests

from profile_sync import clock as step_clock
from profile_sync.adobe_target.client import RetryPolicy, TargetClient
from profile_sync.adobe_target.errors import TargetRetryLater
from profile_sync.adobe_target.ratelimit import InMemoryRateLimiter
from profile_sync.settings import Settings

BASE = "https://demo.tt.omtrdc.net"
STATUS_URL = "https://mboxedge1.tt.omtrdc.net/m2/demo/v2/profile/batchStatus?batchId=demo-1&m2Node=00"
BODY = b"batch=pcId,a\n1,x\n"


class Invocation:
    """A Lambda invocation of `timeout` seconds on a fake clock; calls take `call_seconds`."""

    def __init__(self, timeout: float = 300.0, call_seconds: float = 0.5) -> None:
        self.now = 1_700_000_000.0
        self.deadline = self.now + timeout
        self.call_seconds = call_seconds
        self.sleeps: list[float] = []
        self.timeouts: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def time_left(self) -> float:
        return self.deadline - self.now


class Answers:
    """A requests.Session stand-in: answers with the given statuses (the last one repeats)."""

    def __init__(self, invocation: Invocation, *statuses: int, headers: dict | None = None) -> None:
        self.invocation = invocation
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.calls = 0

    def request(self, method, url, *, timeout, **kwargs):
        self.calls += 1
        self.invocation.timeouts.append(timeout)
        self.invocation.now += min(self.invocation.call_seconds, timeout)
        assert self.invocation.now <= self.invocation.deadline, "a call ran past the invocation"
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        resp = requests.Response()
        resp.status_code = status
        resp.headers.update(self.headers)
        resp._content = (
            b"<response><status>complete</status></response>"
            if status == 200
            else b"<html><body>Service Unavailable</body></html>"
        )
        return resp


def make_client(invocation: Invocation, session: Answers, max_attempts: int = 5, **kwargs) -> TargetClient:
    settings = Settings(http_max_attempts=max_attempts)
    kwargs.setdefault("retry", RetryPolicy(rng=random.Random(1)))  # the real back-off bases
    kwargs.setdefault("time_left", invocation.time_left)
    return TargetClient.from_settings(
        settings.with_overrides(target_base_url=BASE),
        "demo",
        session=session,
        sleep=invocation.sleep,
        **kwargs,
    )


@pytest.mark.parametrize("seed", range(20))
def test_a_503_storm_never_sleeps_past_the_time_left(seed):
    """Default settings (5 attempts, 60 s back-off base, 30 s timeout) in a 300 s invocation."""
    invocation = Invocation(timeout=300)
    session = Answers(invocation, 503)
    client = make_client(invocation, session, retry=RetryPolicy(rng=random.Random(seed)))
    with pytest.raises(TargetRetryLater) as caught:
        client.batch_status(STATUS_URL)
    # Never past the deadline minus the margin (10 s by default), whatever the jitter drew.
    assert invocation.time_left() >= Settings().lambda_time_margin_seconds
    error = caught.value
    assert error.attempts == session.calls  # the count in the message is the calls made
    assert f"Target answered 503 to {'all ' if session.calls > 1 else ''}{session.calls} attempt" in str(
        error
    )
    assert error.retry_after_seconds >= 1


def test_the_wait_that_would_pass_the_deadline_goes_to_the_workflow():
    invocation = Invocation(timeout=40)  # 30 s usable with the 10 s margin
    session = Answers(invocation, 503, headers={"Retry-After": "120"})
    client = make_client(invocation, session)
    with pytest.raises(TargetRetryLater) as caught:
        client.submit_batch(BODY)
    assert invocation.sleeps == []  # Retry-After 120 s: not slept here
    assert caught.value.retry_after_seconds == 120
    assert "left to the workflow" in str(caught.value) and caught.value.attempts == 1


def test_each_call_timeout_is_clamped_to_the_time_left():
    invocation = Invocation(timeout=25, call_seconds=0.1)
    client = make_client(invocation, Answers(invocation, 200))
    client.batch_status(STATUS_URL)
    assert invocation.timeouts == [pytest.approx(15.0)]  # 25 s left - 10 s margin, not 30 s


def test_no_call_when_no_time_is_left():
    invocation = Invocation(timeout=10.5)
    session = Answers(invocation, 200)
    client = make_client(invocation, session)
    with pytest.raises(TargetRetryLater, match="no time left"):
        client.submit_batch(BODY)
    assert session.calls == 0


def test_outside_an_invocation_the_client_waits_as_configured():
    invocation = Invocation()
    session = Answers(invocation, 503, 503, 200)
    client = make_client(invocation, session, time_left=lambda: None)
    client.batch_status(STATUS_URL)
    assert len(invocation.sleeps) == 2 and invocation.timeouts == [30.0] * 3


def test_time_left_comes_from_the_running_invocation_by_default():
    invocation = Invocation(timeout=10.5)
    session = Answers(invocation, 200)
    client = TargetClient.from_settings(
        Settings().with_overrides(target_base_url=BASE), "demo", session=session, sleep=invocation.sleep
    )
    with step_clock.invocation(invocation.time_left), pytest.raises(TargetRetryLater, match="no time left"):
        client.batch_status(STATUS_URL)
    assert session.calls == 0
    client.batch_status(STATUS_URL)  # outside the invocation: no limit
    assert session.calls == 1


def test_the_rate_limiter_never_waits_past_the_time_left():
    invocation = Invocation(timeout=45)
    session = Answers(invocation, 200)
    # 3 calls a minute, of which status polls may take 2 (poll_calls_share 0.8).
    limiter = InMemoryRateLimiter(3, clock=invocation.time, sleep=invocation.sleep)
    client = make_client(invocation, session, limiter=limiter)
    # Start 10 s into a minute: the next window opens in 50 s, more than the 35 s usable.
    invocation.now = (invocation.now // 60) * 60 + 10
    invocation.deadline = invocation.now + 45
    client.batch_status(STATUS_URL)
    client.batch_status(STATUS_URL)
    with pytest.raises(TargetRetryLater) as caught:
        client.batch_status(STATUS_URL)
    assert invocation.sleeps == [] and session.calls == 2
    assert caught.value.retry_after_seconds == pytest.approx(49)  # two 0.5 s calls went by
    assert caught.value.attempts == 0 and str(caught.value).startswith("batchStatus: rate limit")


def test_mixed_failures_are_reported_as_they_were():
    invocation = Invocation()
    session = Answers(invocation, 503, 500, 500)
    client = make_client(
        invocation, session, max_attempts=3, time_left=lambda: None, retry=RetryPolicy.fast()
    )
    with pytest.raises(TargetRetryLater) as caught:
        client.batch_status(STATUS_URL)
    text = str(caught.value)
    assert text.startswith("batchStatus: 3 attempts failed: HTTP 500 x2, HTTP 503 x1")
    assert "giving up" not in text and "for now" not in text
    assert text.count("attempt") == 1  # the count is said once
