"""One job's workflow, run locally: the real ASL, the real handlers, on a virtual or the real clock."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from profile_sync import clock as step_clock
from profile_sync_local.sfn_local import ExecutionResult, LocalStateMachine, VirtualClock
from profile_sync_local.stack.functions import workflow_handlers
from profile_sync_local.stack.project import STATE_MACHINE, definition_substitutions, function_timeouts


@contextlib.contextmanager
def steps_on(clock: VirtualClock) -> Iterator[None]:
    """The steps' time (quota days, deadlines, rate windows, back-off) follows the virtual clock."""
    saved = step_clock.time, step_clock.sleep
    step_clock.time, step_clock.sleep = clock.time, clock.sleep
    try:
        yield
    finally:
        step_clock.time, step_clock.sleep = saved


def run_workflow(
    execution_input: dict,
    *,
    clock: VirtualClock | None,
    handlers: dict | None = None,
    timeout: float = 300.0,
    poll_interval: float = 0.005,
) -> ExecutionResult:
    """Execute the real ASL for one job (the ingest's execution input) with the real handlers.

    clock None: real time (Wait states, retries and the steps' own waits really wait).
    """
    machine = LocalStateMachine(
        STATE_MACHINE,
        handlers if handlers is not None else workflow_handlers(),
        substitutions=definition_substitutions(),
        clock=clock,
        name="profile-sync-workflow",
        timeout=timeout,
        timeouts=function_timeouts(),
        poll_interval=poll_interval,
    )
    with steps_on(clock) if clock is not None else contextlib.nullcontext():
        return machine.run(execution_input, execution_name=execution_input["jobId"])
