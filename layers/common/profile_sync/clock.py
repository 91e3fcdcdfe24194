"""The time source of the workflow steps.

Lambda uses real time. The local runner and the workflow tests replace `time` and `sleep` with a
virtual clock, so a job that would wait hours for Target runs in seconds.
"""

from __future__ import annotations

import contextlib
import time as _time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

# Replaceable (a virtual clock's time and sleep): typed as what callers may rely on.
time: Callable[[], float] = _time.time
sleep: Callable[[float], None] = _time.sleep


def now() -> float:
    return time()


def pause(seconds: float) -> None:
    sleep(seconds)


# The running invocation's remaining time (Lambda's context), per thread of execution: the local
# runner runs several invocations at once in one process.
_time_left: ContextVar[Callable[[], float] | None] = ContextVar("time_left", default=None)


def time_left() -> float | None:
    """Seconds the current invocation has left, or None outside an invocation (CLI, tests)."""
    remaining = _time_left.get()
    return None if remaining is None else remaining()


@contextlib.contextmanager
def invocation(remaining_seconds: Callable[[], float]) -> Iterator[None]:
    """Within this block, time_left() answers remaining_seconds() (e.g. from the Lambda context)."""
    token = _time_left.set(remaining_seconds)
    try:
        yield
    finally:
        _time_left.reset(token)
