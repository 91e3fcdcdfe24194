"""The virtual clock: a shared, thread-safe epoch-seconds clock driven by a discrete-event scheduler.

See the package docstring for when virtual time advances. Pure Python: :mod:`.moto_patches` routes
moto's waits to it, the Lambda router marks handler runs busy on it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import heapq
import itertools
import threading
import time as _real_time
from collections.abc import Callable, Iterator

_UTC = _dt.UTC


class VirtualClock:
    """A shared, thread-safe virtual clock (epoch seconds) driven by a discrete-event scheduler.

    ``now()``/``time()`` read it; ``sleep(d)`` blocks the calling thread until virtual time reaches
    ``now + d`` (see the module docstring for when time advances); ``advance(d)`` moves it forward
    at once. Durations of every sleep are recorded in :attr:`sleeps`.
    """

    def __init__(
        self,
        start: float | _dt.datetime | None = None,
        *,
        settle: float = 0.005,
        max_stall: float = 5.0,
    ) -> None:
        if isinstance(start, _dt.datetime):
            start = (start if start.tzinfo else start.replace(tzinfo=_UTC)).timestamp()
        self._start = float(_real_time.time() if start is None else start)
        self._now = self._start
        self._settle = settle
        self._max_stall = max_stall
        self._cond = threading.Condition()
        self._waiters: list[tuple[float, int]] = []
        self._seq = itertools.count()
        self._busy = 0
        self._last_activity = _real_time.monotonic()
        self._local = threading.local()
        self._sleeps: list[float] = []
        self.forced_advances = 0

    # -- reading ------------------------------------------------------------------------------
    def now(self) -> float:
        """Current virtual time, epoch seconds."""
        return self._now

    time = now  # drop-in for time.time

    def datetime(self) -> _dt.datetime:
        """Current virtual time as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self._now, tz=_UTC)

    @property
    def start(self) -> float:
        return self._start

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the clock was created."""
        return self._now - self._start

    @property
    def sleeps(self) -> list[float]:
        """Every duration passed to :meth:`sleep` (Wait states, retry back-off, handlers)."""
        with self._cond:
            return list(self._sleeps)

    @property
    def total_slept(self) -> float:
        return sum(self.sleeps)

    # -- busy accounting ---------------------------------------------------------------------------
    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)

    def touch(self) -> None:
        """Record activity: the scheduler waits ``settle`` real seconds after it."""
        self._last_activity = _real_time.monotonic()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark the calling thread as doing simulated work (time cannot advance meanwhile)."""
        with self._cond:
            self._local.depth = self._depth() + 1
            self._busy += 1
            self.touch()
        try:
            yield
        finally:
            with self._cond:
                self._local.depth = self._depth() - 1
                self._busy -= 1
                self.touch()
                self._cond.notify_all()

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        """Mark the calling thread as blocked (not busy) for the duration of the block."""
        with self._cond:
            depth = self._depth()
            self._local.depth = 0
            self._busy -= depth
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._local.depth = depth
                self._busy += depth
                self.touch()

    def hold(self, n: int = 1) -> None:
        """Count ``n`` extra busy units not tied to a thread (a hand-off to a thread about to wake)."""
        with self._cond:
            self._busy += n
            self.touch()

    def unhold(self, n: int = 1) -> None:
        with self._cond:
            self._busy -= n
            self.touch()
            self._cond.notify_all()

    # -- moving time ----------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Move virtual time forward now, releasing every sleeper that becomes due."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        with self._cond:
            self._now += seconds
            self.touch()
            self._cond.notify_all()

    def sleep(self, seconds: float, should_stop: Callable[[], bool] | None = None) -> None:
        """Block until virtual time reaches ``now + seconds`` (or ``should_stop()`` is true)."""
        seconds = float(seconds)
        if seconds <= 0:
            _real_time.sleep(0)
            return
        with self._cond:
            self._sleeps.append(seconds)
            wake = self._now + seconds
            entry = (wake, next(self._seq))
            heapq.heappush(self._waiters, entry)
            depth = self._depth()
            self._local.depth = 0
            self._busy -= depth
            self.touch()
            self._cond.notify_all()
            try:
                while self._now < wake:
                    if should_stop is not None and should_stop():
                        break
                    if self._waiters[0] is entry:
                        quiet = _real_time.monotonic() - self._last_activity
                        if quiet >= self._settle and (self._busy <= 0 or quiet >= self._max_stall):
                            if self._busy > 0:
                                self.forced_advances += 1
                            self._now = max(self._now, wake)
                            self._cond.notify_all()
                            break
                        self._cond.wait(timeout=self._settle)
                    else:
                        self._cond.wait(timeout=0.05)
            finally:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
                self._local.depth = depth
                self._busy += depth
                self.touch()
                self._cond.notify_all()
        _real_time.sleep(0)  # let concurrently released threads run

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.datetime().isoformat()}, elapsed={self.elapsed:.3f}s)"
