"""Progress of a local run that a person can follow: a live table on a terminal, plain lines in a pipe.

It watches the step handlers (wrapping them, so the pipeline itself knows nothing of it) and shows
counts, batch states and quota waits at the run's time (simulated on the virtual clock). Never a
profile value: only what the steps return (counts, states, waits).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

Handler = Callable[[dict, object], dict]


class Progress:
    def __init__(
        self,
        stream: TextIO,
        now: Callable[[], float],
        *,
        live: bool | None = None,
        simulated: bool = True,
    ) -> None:
        self.stream = stream
        self.now = now
        self.live = stream.isatty() if live is None else live
        self.time_label = "simulated" if simulated else "time (UTC)"
        self.batches: dict[int, str] = {}
        self.rows: dict[int, int] = {}
        self._drawn = 0
        self._lock = threading.Lock()

    # --------------------------------------------------------------------------------- events
    def note(self, text: str) -> None:
        self._line(text)

    def validated(self, job: Mapping[str, Any]) -> None:
        if job["status"] == "REJECTED":
            self._line(f"file rejected: {job.get('reason')}")
            return
        self._line(
            f"validated {job.get('received', 0):,} rows: {job.get('accepted', 0):,} accepted in "
            f"{job.get('batchCount', 0)} batch file(s), {job.get('rejected', 0):,} rejected, "
            f"{job.get('skipped', 0):,} skipped"
            + (f", {job['unchanged']:,} unchanged (delta: not sent)" if job.get("unchanged") else "")
        )

    def step(self, name: str, event: dict, result: dict) -> None:
        batch = event.get("batch") or {}
        index = batch.get("batchIndex")
        if index is not None:
            self.rows.setdefault(index, batch.get("rows", 0))
        state = _describe(name, result)
        if state is None:
            return
        if index is None:
            self._line(state)
        else:
            self._batch(index, state)

    def finished(self, result: Mapping[str, Any]) -> None:
        self._line(f"job {result['status']}")

    # --------------------------------------------------------------------------------- output
    def _stamp(self) -> str:
        return datetime.fromtimestamp(self.now(), UTC).strftime("%H:%M:%S")

    def _line(self, text: str) -> None:
        with self._lock:
            self._clear()
            self.stream.write(f"[{self._stamp()}] {text}\n")
            self._drawn = 0
            self._draw()

    def _batch(self, index: int, state: str) -> None:
        with self._lock:
            if self.batches.get(index) == state:
                return
            self.batches[index] = state
            if self.live:
                self._clear()
                self._draw()
            else:
                self.stream.write(
                    f"[{self._stamp()}] batch {index} ({self.rows.get(index, 0):,} rows): {state}\n"
                )
            self.stream.flush()

    def _clear(self) -> None:
        if self.live and self._drawn:
            # Move up over the table drawn last time and clear it.
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        if not self.live or not self.batches:
            self.stream.flush()
            return
        lines = [f"  {self.time_label} {self._stamp()}"]
        lines += [
            f"  batch {i:>4}  {self.rows.get(i, 0):>9,} rows  {s}" for i, s in sorted(self.batches.items())
        ]
        self.stream.write("\n".join(lines) + "\n")
        self._drawn = len(lines)
        self.stream.flush()


def _describe(name: str, result: dict) -> str | None:
    """One short state for a step's result (counts and waits only)."""
    if name == "ReserveQuota":
        if result.get("granted"):
            return "quota reserved"
        return f"waiting {result.get('waitSeconds', 0) // 3600} h for the daily quota"
    if name in ("SubmitBatch", "PollBatch", "FailBatch"):
        if result.get("done"):
            counts = result.get("counts") or {}
            parts = ", ".join(f"{k} {v:,}" for k, v in counts.items() if v)
            return f"{result.get('end', 'ended')}: {parts or 'no rows'}"
        if name == "SubmitBatch":
            return "uploaded, waiting for Target"
        return f"polling ({result.get('polls', 0)} so far, next in {result.get('delaySeconds', 0)} s)"
    if name == "SingleUpdate":
        if result.get("waitSeconds"):
            return f"waiting {result['waitSeconds'] // 3600} h for the single-update quota"
        return (
            "single updates sent"
            if result.get("done")
            else f"single updates: {result.get('cursor', 0):,} sent"
        )
    if name == "Finalize":
        return f"report written: {result.get('status')}"
    if name == "JobFailed":
        return f"job failed: {result.get('reason')}"
    if name == "LandingCheck":
        return _landing(result)
    return None


def _landing(result: dict) -> str:
    """The landing check: waiting, or what the sample showed (counts only)."""
    if not result.get("done"):
        return f"landing check: read {result.get('round', 1)} in {result.get('waitSeconds', 0)} s"
    figures = result.get("result") or {}
    if not figures.get("sampled"):
        return f"landing check {figures.get('reason') or 'not run'}"
    return (
        f"landing check: {figures.get('verified', 0)} of {figures['sampled']} sampled profiles verified, "
        f"{figures.get('mismatched', 0)} mismatched, {figures.get('notVisible', 0)} not yet visible, "
        f"{figures.get('unchecked', 0)} unchecked"
    )


def observed(handlers: dict[str, Handler], progress: Progress) -> dict[str, Handler]:
    """The same handlers, reporting each result to `progress`."""

    def wrap(name: str, handler: Handler) -> Handler:
        def wrapped(event: dict, context: object) -> dict:
            result = handler(event, context)
            progress.step(name, event, result if isinstance(result, dict) else {})
            return result

        return wrapped

    return {name: wrap(name, handler) for name, handler in handlers.items()}
