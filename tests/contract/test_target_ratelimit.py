"""The 50 calls/minute limiter holding with several threads, checked by the emulator's own counter."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from profile_sync.adobe_target.client import RetryPolicy, TargetClient
from profile_sync.adobe_target.ratelimit import InMemoryRateLimiter
from profile_sync.aws.ratelimit import DynamoDBRateLimiter
from profile_sync_local.emulator import EmulatorConfig, TargetEmulator
from tests.contract.conftest import CLIENT, VirtualScheduler, atomic_moto_dynamodb, batch, create_rate_table

THREADS = 6
BATCHES_PER_THREAD = 20  # 120 submits + 120 status calls = 240 limited calls: at least 5 windows


def _run(limiter_factory) -> TargetEmulator:
    clock = VirtualScheduler(THREADS)
    errors: list[BaseException] = []
    with TargetEmulator(EmulatorConfig(calls_per_minute=50, seed=1), clock=clock.time) as emulator:
        limiter = limiter_factory(clock)

        def work(n: int) -> None:
            with clock.worker():
                try:
                    client = TargetClient(
                        emulator.url,
                        CLIENT,
                        limiter=limiter,
                        sleep=clock.sleep,
                        retry=RetryPolicy.fast(n),
                        max_attempts=2,
                    )
                    for i in range(BATCHES_PER_THREAD):
                        url = client.submit_batch(batch(f"{n}-{i},x")).status_url
                        assert client.batch_status(url).state == "complete"
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
        return emulator


def _check(emulator: TargetEmulator) -> None:
    limited = THREADS * BATCHES_PER_THREAD * 2
    assert emulator.calls["batchUpdate"] + emulator.calls["batchStatus"] == limited  # not a single 503
    assert all(r["status"] != 503 for r in emulator.requests)
    assert emulator.max_calls_per_window(CLIENT) == 50
    assert sum(emulator.window_calls.values()) == limited
    assert len(emulator.window_calls) == -(-limited // 50)  # every window filled before the next


def test_in_memory_limiter_holds_50_per_minute_across_threads():
    _check(_run(lambda clock: InMemoryRateLimiter(50, clock=clock.time, sleep=clock.sleep)))


@pytest.mark.usefixtures("_no_real_aws")
def test_dynamodb_limiter_holds_50_per_minute_across_threads(aws):
    with atomic_moto_dynamodb():
        table = create_rate_table()
        emulator = _run(lambda clock: DynamoDBRateLimiter(table, 50, clock.time, sleep=clock.sleep))
        _check(emulator)
        windows = table.scan()["Items"]
        assert {item["pk"] for item in windows} == {f"RATE#{CLIENT}"}
        assert max(int(item["calls"]) for item in windows) == 50
        assert all(int(item["expiresAt"]) > int(item["sk"]) for item in windows)


def test_submits_keep_priority_over_the_polls_of_many_batches():
    """Five batches polling flat out and one submitter share 50 calls a minute: polls never take more
    than their 80%, so the submitter gets the other 10 every minute, and Target never answers 503."""
    pollers, submits = 5, 25
    clock = VirtualScheduler(pollers + 1)
    calls: list[tuple[str, int]] = []  # (endpoint, window) of every call that got through
    errors: list[BaseException] = []
    with TargetEmulator(EmulatorConfig(seed=1, polls_until_complete=10**6), clock=clock.time) as emulator:
        limiter = InMemoryRateLimiter(50, clock=clock.time, sleep=clock.sleep)

        def client(n: int) -> TargetClient:
            return TargetClient(
                emulator.url,
                CLIENT,
                limiter=limiter,
                sleep=clock.sleep,
                retry=RetryPolicy.fast(n),
                max_attempts=2,
                poll_calls_share=0.8,
                limiter_max_wait=3600,
            )

        # The batch everyone polls, submitted before the race (and before Target counts calls).
        status_url = TargetClient(emulator.url, CLIENT).submit_batch(batch("seed,x")).status_url
        emulator.configure(calls_per_minute=50)

        def poll(n: int) -> None:
            with clock.worker():
                try:
                    c = client(n)
                    for _ in range(60):
                        c.batch_status(status_url)
                        calls.append(("poll", int(clock.time() // 60)))
                except BaseException as exc:
                    errors.append(exc)

        def submit() -> None:
            with clock.worker():
                try:
                    c = client(pollers)
                    for i in range(submits):
                        c.submit_batch(batch(f"s{i},x"))
                        calls.append(("submit", int(clock.time() // 60)))
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=poll, args=(n,)) for n in range(pollers)]
        threads.append(threading.Thread(target=submit))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert all(r["status"] != 503 for r in emulator.requests)

    per_window: dict[int, Counter] = {}
    for kind, window in calls:
        per_window.setdefault(window, Counter())[kind] += 1
    windows = sorted(per_window)
    assert all(per_window[w]["poll"] <= 40 for w in windows)
    assert all(sum(per_window[w].values()) <= 50 for w in windows)
    # The submitter is never starved: at least 10 submits a minute until it is done.
    done = submits
    for w in windows:
        assert per_window[w]["submit"] >= min(10, done), per_window
        done -= per_window[w]["submit"]
        if not done:
            break
    assert sum(c["submit"] for c in per_window.values()) == submits
