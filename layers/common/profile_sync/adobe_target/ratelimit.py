"""Client-side limiter for Target's 50 calls per minute per client (bulk submits and status calls).

try_acquire() takes a slot in the current fixed one-minute window or says how long to wait for
the next one; acquire() waits (through an injected sleep) up to max_wait and otherwise raises
TargetRetryLater, so a Lambda never sleeps past its budget and the workflow waits instead.

Submits keep priority over status polls: a call with share < 1 (a poll) takes a slot only while
the window holds fewer than share x calls_per_minute calls, so the rest of every minute stays free
for submits whatever the number of batches polling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from .errors import TargetRetryLater

WINDOW_SECONDS = 60


@runtime_checkable
class RateLimiter(Protocol):
    def try_acquire(self, key: str, *, share: float = 1.0) -> float:
        """0.0 when a call slot was taken, else the seconds to wait before trying again."""
        ...

    def acquire(self, key: str, *, max_wait: float, share: float = 1.0) -> None:
        """Take a slot, waiting at most max_wait seconds in total; TargetRetryLater beyond that."""
        ...


def window_start(now: float, window: int = WINDOW_SECONDS) -> int:
    return int(now // window) * window


def ceiling(calls_per_minute: int, share: float) -> int:
    """The calls a window may hold when this call is taken (at least one for any share)."""
    return calls_per_minute if share >= 1.0 else max(1, int(calls_per_minute * share))


class WindowedLimiter:
    """acquire() on top of try_acquire(); subclasses supply try_acquire."""

    def __init__(
        self,
        calls_per_minute: int = 50,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls_per_minute <= 0:
            raise ValueError("calls_per_minute must be positive")
        self.calls_per_minute = calls_per_minute
        self.clock = clock
        self.sleep = sleep

    def try_acquire(self, key: str, *, share: float = 1.0) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def acquire(self, key: str, *, max_wait: float, share: float = 1.0) -> None:
        waited = 0.0
        while True:
            wait = self.try_acquire(key, share=share)
            if wait <= 0:
                return
            if waited + wait > max_wait:
                raise TargetRetryLater(
                    f"rate limit for {key}: no call slot within {max_wait:.0f}s",
                    retry_after_seconds=max(wait, 1.0),
                )
            self.sleep(wait)
            waited += wait


class NoLimit(WindowedLimiter):
    def try_acquire(self, key: str, *, share: float = 1.0) -> float:
        return 0.0


class InMemoryRateLimiter(WindowedLimiter):
    """Fixed one-minute windows per key, shared by the threads of one process (local runs, tests)."""

    def __init__(
        self,
        calls_per_minute: int = 50,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(calls_per_minute, clock=clock, sleep=sleep)
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (window start, calls taken)

    def try_acquire(self, key: str, *, share: float = 1.0) -> float:
        with self._lock:
            now = self.clock()
            start = window_start(now)
            current, calls = self._windows.get(key, (start, 0))
            if current != start:
                calls = 0
            if calls < ceiling(self.calls_per_minute, share):
                self._windows[key] = (start, calls + 1)
                return 0.0
            return max(start + WINDOW_SECONDS - now, 0.001)
