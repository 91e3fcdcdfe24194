"""The default poll schedule: the report lags Target by at most max(60 s, 25% of the processing time),
and a batch that takes the full 24 h costs at most about 40 polls. Proven on the schedule itself for
every whole minute from 1 min to 24 h (and odd seconds around each poll); the workflow test
(tests/workflow/test_poll_lag.py) shows the same on the virtual clock through the real state machine."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from profile_sync.poll_schedule import next_delay, poll_times
from profile_sync.settings import Settings

DEFAULTS = Settings()
DAY = 24 * 3600


def lag_bound(processing: float, settings: Settings = DEFAULTS) -> float:
    return max(settings.poll_min_delay_seconds, settings.poll_delay_share * processing)


def processing_times() -> list[float]:
    every_minute = list(range(60, DAY + 1, 60))
    # The worst cases: Target completing just after a poll looked.
    just_after_a_poll = [t + 1 for t in poll_times(DEFAULTS) if t < DAY]
    rng = random.Random(13)
    return every_minute + just_after_a_poll + [rng.uniform(60, DAY) for _ in range(2000)]


def test_the_report_lags_target_by_at_most_the_bound_from_1_min_to_24_h() -> None:
    for processing in processing_times():
        times = poll_times(DEFAULTS, processing)
        lag = times[-1] - processing
        assert 0 <= lag <= lag_bound(processing), (processing, lag, times[-3:])


def test_a_batch_of_a_full_day_costs_at_most_40_polls() -> None:
    assert len(poll_times(DEFAULTS, DAY)) == 34
    assert len(poll_times(DEFAULTS, None)) == 34  # never completes: polled until the deadline
    assert max(len(poll_times(DEFAULTS, p)) for p in processing_times()) <= 40


def test_the_schedule_starts_at_the_minimum_and_grows_by_the_share() -> None:
    times = poll_times(DEFAULTS)
    assert times[:6] == [60, 120, 180, 240, 300, 375]
    assert times[-1] == DAY
    # Between the minimum and the cap, each poll is 1.25x the previous (whole seconds).
    for before, after in itertools.pairwise(times[4:]):
        if after - before < DEFAULTS.poll_max_delay_seconds and after < DAY:
            assert after == before + math.floor(0.25 * before)


def test_today_s_doubling_schedule_broke_the_bound() -> None:
    """The old schedule (60 s, then doubling to 30 min) noticed an 8-minute batch only at 15 min."""
    old = [60]
    delay = 60
    while old[-1] < 8 * 60:
        delay = min(delay * 2, 1800)
        old.append(old[-1] + delay)
    assert old[-1] == 15 * 60 and old[-1] - 8 * 60 > lag_bound(8 * 60)
    assert poll_times(DEFAULTS, 8 * 60)[-1] - 8 * 60 <= lag_bound(8 * 60)


def test_waits_never_pass_the_deadline_nor_the_cap() -> None:
    settings = Settings(poll_max_delay_seconds=300, poll_deadline_seconds=1000)
    assert next_delay(settings, submitted_at=0, now=10_000, deadline_at=1e9) == 300
    assert next_delay(settings, submitted_at=0, now=990, deadline_at=1000) == 10
    assert next_delay(settings, submitted_at=0, now=1000, deadline_at=1000) == 1  # Wait needs >= 1
    assert poll_times(settings)[-1] == 1000


@pytest.mark.parametrize("share", [0.1, 0.5, 1.0])
def test_the_bound_follows_the_settings(share: float) -> None:
    settings = Settings(poll_delay_share=share, poll_max_delay_seconds=DAY)
    for processing in range(60, DAY, 97):
        lag = poll_times(settings, processing)[-1] - processing
        assert lag <= lag_bound(processing, settings)


def test_shares_outside_0_to_1_are_refused() -> None:
    for name in ("poll_delay_share", "poll_calls_share"):
        with pytest.raises(ValueError, match=name):
            Settings(**{name: 0})
        with pytest.raises(ValueError, match=name):
            Settings(**{name: 1.5})
