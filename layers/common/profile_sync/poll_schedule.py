"""When to ask Target about a batch next: a wait proportional to the time the batch has taken.

The wait after a poll is `poll_delay_share` of the seconds since the batch was submitted, at least
`poll_min_delay_seconds` and at most `poll_max_delay_seconds`, never past the deadline; the first
poll comes `poll_initial_delay_seconds` after the submit. So the poll times grow geometrically
(ratio 1 + share) once the share passes the minimum.

Why the report's lag behind Target stays under max(min delay, share x processing time): if Target
completes at T, between polls at t_k < T <= t_k+1, the lag is t_k+1 - T < t_k+1 - t_k = wait_k
<= max(min delay, share x t_k) <= max(min delay, share x T). With the defaults (60 s, 0.25, 2 h):
60, 120, 180, 240, 300, 375, ... and a batch still running at the 24 h deadline costs 34 polls.
"""

from __future__ import annotations

import math
from typing import Any


def first_delay(settings: Any) -> int:
    return max(1, int(settings.poll_initial_delay_seconds))


def next_delay(settings: Any, *, submitted_at: float, now: float, deadline_at: float) -> int:
    """Whole seconds to wait before the next poll (Step Functions' Wait takes integers)."""
    elapsed = max(0.0, now - submitted_at)
    delay = max(settings.poll_min_delay_seconds, math.floor(settings.poll_delay_share * elapsed))
    delay = min(delay, settings.poll_max_delay_seconds, deadline_at - now)
    return max(1, int(delay))


def poll_times(settings: Any, processing_seconds: float | None = None) -> list[int]:
    """Seconds after the submit at which each poll happens, until the one that sees the batch end
    (completed after `processing_seconds`; None: never, so polling stops at the deadline).
    Polls take no time here: what the virtual clock shows and the lower bound of a real run."""
    deadline = settings.poll_deadline_seconds
    times = []
    t = first_delay(settings)
    while True:
        times.append(t)
        if (processing_seconds is not None and t >= processing_seconds) or t >= deadline:
            return times
        t += next_delay(settings, submitted_at=0, now=t, deadline_at=deadline)
