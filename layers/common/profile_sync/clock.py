"""The time source of the workflow steps.

Lambda uses real time. The local runner and the workflow tests replace `time` and `sleep` with a
virtual clock, so a job that would wait hours for Target runs in seconds.
"""

from __future__ import annotations

import time as _time

time = _time.time
sleep = _time.sleep


def now() -> float:
    return time()


def pause(seconds: float) -> None:
    sleep(seconds)
