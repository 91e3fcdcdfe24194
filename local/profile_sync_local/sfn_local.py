"""Run a real Amazon States Language definition locally, on moto's Step Functions interpreter.

moto (pinned: :data:`MOTO_VERSION`) can *execute* a state machine when its config says
``{"stepfunctions": {"execute_state_machine": True}}``. This module adds what is missing to use
that for workflow tests and for ``profile-sync run``:

* **Lambda routing.** With ``{"lambda": {"use_docker": False}}`` every Lambda invocation made by
  the interpreter (``Resource`` = a function ARN, or ``arn:aws:states:::lambda:invoke``) lands in
  ``moto.awslambda_simple.models.LambdaSimpleBackend.invoke``. :class:`LambdaRouter` replaces that
  method and calls an in-process Python handler ``handler(event, context)``. A raised exception is
  returned as a Lambda *function error* (header ``x-amz-function-error: Unhandled`` and body
  ``{"errorType": <exception class name>, "errorMessage": str(exc)}``), so ``Retry``/``Catch``
  match on the class name exactly as on AWS. No function needs to be created in moto's Lambda.
* **Virtual time.** :class:`VirtualClock` replaces the real sleeps of ``Wait`` states
  (Seconds/SecondsPath/Timestamp/TimestampPath) and of ``Retry`` back-off, stamps history events
  with virtual time, and is the time source handlers should use (inject ``clock.time`` /
  ``clock.sleep``). A job whose batches poll for hours finishes in seconds.
* **Compat fixes** for the ``states:startExecution[.sync[:2]]`` integration, which moto 5.2.5
  cannot run as shipped (see :func:`_patch_sfn_integration`).

Virtual-time semantics (a small discrete-event scheduler)
---------------------------------------------------------
Virtual time only moves when the whole simulated system is idle. Every thread that evaluates a
state is *busy*; it stops being busy while it sleeps on the clock, while a Map/Parallel state
waits for its iterations/branches, while a Task state waits for its worker thread, and while a
``.sync`` task polls its child. A sleeper registers its wake time ``now + d``; when no thread is
busy and nothing happened for ``settle`` real seconds, the sleeper with the *earliest* wake time
moves ``now`` to its wake time and is released (together with every sleeper due at that time).
Waking a waiter hands the waker's busy-ness over to it (Map/Parallel/Task events, program
joins), so no spurious idle window opens while the woken thread waits for the GIL.
So concurrent Map iterations that each wait 3600 s take 3600 virtual seconds in total, not
N x 3600, and handler code runs in zero virtual time. If the system stays "busy" without progress
for ``max_stall`` real seconds (a blocking point this module does not know about), the earliest
sleeper advances anyway and :attr:`VirtualClock.forced_advances` counts it.

Typical test use::

    with mock_aws(config=SFN_LOCAL_CONFIG):          # or plain mock_aws(); see below
        clock = VirtualClock(start=1_767_225_600)
        sm = LocalStateMachine(asl_text, {"Validate": validate.handler}, clock=clock,
                               substitutions={"ValidateFunctionArn": function_arn("Validate")})
        result = sm.run({"key": "in/x.csv"})
        assert result.status == "SUCCEEDED", result.describe()

``LocalStateMachine.run`` opens its own :func:`sfn_local` environment (starting ``mock_aws`` if
none is active, switching moto's config to the executing backend for the duration of the run,
installing the Lambda router and the clock), so it works from pytest and from a CLI alike.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import heapq
import io
import itertools
import json
import os
import re
import threading
import time as _real_time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import unquote, urlsplit

import moto

MOTO_VERSION = "5.2.5"
"""The moto release the patches below were written against (checked at import time)."""

if moto.__version__ != MOTO_VERSION:  # pragma: no cover - guard
    raise ImportError(
        f"profile_sync_local.sfn_local patches moto internals and was written for moto {MOTO_VERSION}; "
        f"found moto {moto.__version__}. Re-check the patched functions (see module docstring) and "
        "update MOTO_VERSION."
    )

# Imported after the version check: these are the internals we patch.
import boto3  # noqa: E402
import botocore.session  # noqa: E402
from botocore import xform_name  # noqa: E402
from botocore.awsrequest import AWSResponse  # noqa: E402
from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: E402
from moto.core.config import default_user_config  # noqa: E402
from moto.core.models import botocore_stubber  # noqa: E402
from moto.stepfunctions.parser import utils as _sfn_utils  # noqa: E402
from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails  # noqa: E402
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (  # noqa: E402
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (  # noqa: E402
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (  # noqa: E402
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl as _retrier_decl  # noqa: E402
from moto.stepfunctions.parser.asl.component.common.retry.retry_outcome import RetryOutcome  # noqa: E402
from moto.stepfunctions.parser.asl.component.program.program import Program as _Program  # noqa: E402
from moto.stepfunctions.parser.asl.component.state import state as _state_mod  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.exec import execute_state as _execute_state  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (  # noqa: E402
    distributed_iteration_component as _distributed,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import job as _job  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (  # noqa: E402, E501
    DistributedItemProcessorWorker as _DistributedItemProcessorWorker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iteration_worker import (  # noqa: E402
    IterationWorker as _IterationWorker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator.distributed_iterator_worker import (  # noqa: E402, E501
    DistributedIteratorWorker as _DistributedIteratorWorker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import (  # noqa: E402
    branch_worker as _branch_worker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import (  # noqa: E402
    branches_decl as _branches_decl,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import (  # noqa: E402
    lambda_eval_utils as _lambda_eval_utils,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (  # noqa: E402
    state_task_service_callback as _callback_mod,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (  # noqa: E402
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import (  # noqa: E402
    timestamp as _timestamp_mod,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import (  # noqa: E402
    wait_function as _wait_function_mod,
)
from moto.stepfunctions.parser.asl.eval import count_down_latch as _latch_mod  # noqa: E402
from moto.stepfunctions.parser.asl.eval.event import event_manager as _event_manager_mod  # noqa: E402
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails  # noqa: E402

SFN_LOCAL_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
"""moto config that makes Step Functions execute definitions and Lambda use the simple backend."""

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
DUMMY_ROLE_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/sfn-local"
HISTORY_EVENT_LIMIT = 25_000
"""AWS's hard limit of events in one Standard execution's history (moto does not enforce it)."""

_UTC = _dt.UTC


def function_arn(name: str, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> str:
    """The Lambda ARN moto's account/region would give function ``name``."""
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


# --------------------------------------------------------------------------------------------------
# Virtual clock
# --------------------------------------------------------------------------------------------------


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


class _ClockTimeModule:
    """Stand-in for the ``time`` module inside one moto module: sleep goes to the virtual clock."""

    def __init__(self, sleep: Callable[[float], None]) -> None:
        self.sleep = sleep
        self.time = _real_time.time
        self.monotonic = _real_time.monotonic


def _clock_patches(clock: VirtualClock) -> list[Any]:
    """The mock.patch objects that route moto's waits to ``clock`` (started by :func:`sfn_local`)."""

    def wait_interval(self: Any, env: Any, wait_seconds: float) -> None:
        clock.sleep(wait_seconds, should_stop=lambda: not env.is_running())

    def timestamp_wait_seconds(self: Any, env: Any) -> float:
        # moto: delta = timestamp - datetime.now() (naive local time); here: virtual UTC time.
        self.string.eval(env=env)
        timestamp_str = env.stack.pop()
        timestamp = self._from_timestamp_string(timestamp=timestamp_str)
        if timestamp is None:
            raise FailureEventException(self._create_failure_event(env, timestamp_str))
        return timestamp.replace(tzinfo=_UTC).timestamp() - clock.now()

    def sync_poll_sleep(seconds: float) -> None:
        # .sync tasks poll describe_execution every 0.5 s of real time; the child's progress is
        # what matters, so poll quickly and count as idle meanwhile.
        with clock.idle():
            _real_time.sleep(min(seconds, 0.005))

    def busy_wrapper(orig: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with clock.busy():
                return orig(*args, **kwargs)

        return wrapped

    def idle_wrapper(orig: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with clock.idle():
                return orig(*args, **kwargs)

        return wrapped

    class _HandoffEvent(threading.Event):
        """An Event whose waiters are idle, and whose ``set()`` hands busy-ness over to them.

        Without the hand-off there is a window (up to a GIL switch interval) between the setter
        finishing and the waiter resuming in which nothing is busy and time could jump.
        """

        def __init__(self) -> None:
            super().__init__()
            self._lk = threading.Lock()
            self._idle_waiters = 0
            self._holds = 0

        def wait(self, timeout: float | None = None) -> bool:
            with self._lk:
                self._idle_waiters += 1
            try:
                with clock.idle():
                    return super().wait(timeout)
            finally:
                with self._lk:
                    self._idle_waiters -= 1
                    if self._holds:
                        self._holds -= 1
                        clock.unhold()

        def set(self) -> None:
            with self._lk:
                extra = self._idle_waiters - self._holds
                if extra > 0:
                    self._holds += extra
                    clock.hold(extra)
            super().set()

    program_holds: Counter[int] = Counter()
    holds_lock = threading.Lock()

    def program_eval(orig: Callable[..., Any]) -> Callable[..., Any]:
        # Program.eval starts a thread running Program._eval_body and joins it: idle meanwhile,
        # then take over the hold left by the finished thread.
        def wrapped(self: Any, env: Any) -> Any:
            try:
                with clock.idle():
                    return orig(self, env)
            finally:
                with holds_lock:
                    n = program_holds.pop(id(env), 0)
                if n:
                    clock.unhold(n)

        return wrapped

    def program_body(orig: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(self: Any, env: Any) -> Any:
            with clock.busy():
                try:
                    return orig(self, env)
                finally:
                    with holds_lock:
                        program_holds[id(env)] += 1
                    clock.hold()

        return wrapped

    def busy_thread(*args: Any, target: Callable[..., Any] | None = None, **kwargs: Any) -> threading.Thread:
        return threading.Thread(*args, target=busy_wrapper(target) if target else None, **kwargs)

    threading_shim = _ThreadingShim(Event=_HandoffEvent)
    common_eval = _state_mod.CommonStateField.eval
    return [
        # A thread evaluating a program (execution, Map iteration, Parallel branch) or a state is
        # busy; a thread that started a program's thread and joins it is not.
        mock.patch.object(_Program, "eval", program_eval(_Program.eval)),
        mock.patch.object(_Program, "_eval_body", program_body(_Program._eval_body)),
        *(
            mock.patch.object(cls, "eval", busy_wrapper(cls.eval))
            for cls in (_IterationWorker, _DistributedItemProcessorWorker, _DistributedIteratorWorker)
        ),
        mock.patch.object(
            _branch_worker.BranchWorker,
            "_thread_routine",
            busy_wrapper(_branch_worker.BranchWorker._thread_routine),
        ),
        mock.patch.object(_state_mod.CommonStateField, "eval", busy_wrapper(common_eval)),
        # ...and so is a Task's worker thread; the state thread waiting for it is not.
        mock.patch.object(_execute_state, "Thread", busy_thread),
        mock.patch.object(_execute_state, "threading", threading_shim),
        # Map / Parallel waits (on an Event) are idle, with hand-off.
        mock.patch.object(_job, "threading", threading_shim),
        mock.patch.object(_branches_decl, "threading", threading_shim),
        mock.patch.object(_latch_mod.CountDownLatch, "wait", idle_wrapper(_latch_mod.CountDownLatch.wait)),
        # The sleeps themselves.
        mock.patch.object(_wait_function_mod.WaitFunction, "_wait_interval", wait_interval),
        mock.patch.object(_timestamp_mod.Timestamp, "_get_wait_seconds", timestamp_wait_seconds),
        mock.patch.object(_retrier_decl, "time", _ClockTimeModule(clock.sleep)),
        mock.patch.object(_callback_mod, "time", _ClockTimeModule(sync_poll_sleep)),
        # History events carry virtual timestamps.
        mock.patch.object(
            _event_manager_mod.EventManager, "_get_current_timestamp", staticmethod(clock.datetime)
        ),
    ]


class _ThreadingShim:
    """``threading`` as seen by one moto module, with some attributes replaced."""

    def __init__(self, **overrides: Any) -> None:
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


# --------------------------------------------------------------------------------------------------
# states:startExecution compat (moto 5.2.5 bug)
# --------------------------------------------------------------------------------------------------

_SFN_SERVICE_MODEL = botocore.session.get_session().get_service_model("stepfunctions")


def _sfn_operation(action_snake: str) -> Any:
    for name in _SFN_SERVICE_MODEL.operation_names:
        if xform_name(name) == action_snake:
            return _SFN_SERVICE_MODEL.operation_model(name)
    raise KeyError(action_snake)


def _epoch_millis(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _epoch_millis(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_epoch_millis(v) for v in value]
    if isinstance(value, _dt.datetime):
        return int(value.timestamp() * 1000)
    return value


def _patch_map_run_failures() -> list[Any]:
    """A Distributed Map run fails when its failed children exceed ToleratedFailureCount/Percentage.

    Both are 0 by default on AWS: one failed child fails the run with
    States.ExceedToleratedFailureThreshold, which the parent's Catch sees. moto 5.2.5 counts failed
    children but lets the Map state succeed, which would hide a step failure; this restores AWS's rule.
    """
    original = _distributed.DistributedIterationComponent._map_run

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        original(self, env, eval_input)
        record = eval_input.map_run_record
        failed, total = record.item_counter.failed.get(), record.item_counter.total.get()
        if failed and (
            failed > record.tolerated_failure_count
            or failed * 100 > record.tolerated_failure_percentage * total
        ):
            error = StatesErrorNameType.StatesExceedToleratedFailureThreshold
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=error),
                    event_type=HistoryEventType.MapRunFailed,
                    event_details=EventDetails(
                        mapRunFailedEventDetails=MapRunFailedEventDetails(
                            error=error.to_name(),
                            cause=f"The specified tolerated failure threshold was exceeded: "
                            f"{failed} of {total} child executions failed",
                        )
                    ),
                )
            )

    return [mock.patch.object(_distributed.DistributedIterationComponent, "_map_run", map_run)]


def _patch_sfn_integration() -> list[Any]:
    """Make ``arn:aws:states:::states:startExecution[.sync|.sync:2]`` work.

    moto 5.2.5's ``StateTaskService._normalise_parameters/_normalise_response`` are no-ops, so the
    Step Functions integration passes ``StateMachineArn``/``Input`` to boto3 (which wants
    ``stateMachineArn``/``input``) and fails with ``States.Runtime: 'StateMachineArn'``; it also
    never defaults ``Name`` (moto's parser backend then names every such execution ``None``, so a
    second child collides). This maps parameters to the API's member names, gives a uuid ``Name``,
    and maps the response back to PascalCase with dates as epoch milliseconds, as AWS does.
    """
    orig_normalise = StateTaskServiceSfn._normalise_parameters

    def normalise_parameters(
        self: Any,
        parameters: dict,
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        orig_normalise(self, parameters, boto_service_name, service_action_name)
        action = self._get_boto_service_action(service_action_name)
        if action == "start_execution" and not parameters.get("Name") and not parameters.get("name"):
            parameters["Name"] = str(uuid.uuid4())
        self._to_boto_request(parameters, _sfn_operation(action).input_shape)

    def normalise_response(
        self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
    ) -> None:
        action = self._get_boto_service_action(service_action_name)
        self._from_boto_response(response, _sfn_operation(action).output_shape)
        if isinstance(response, dict):
            response.update(_epoch_millis(response))

    return [
        mock.patch.object(StateTaskServiceSfn, "_normalise_parameters", normalise_parameters),
        mock.patch.object(StateTaskServiceSfn, "_normalise_response", normalise_response),
    ]


# --------------------------------------------------------------------------------------------------
# State transitions, as Step Functions bills them
# --------------------------------------------------------------------------------------------------


class TransitionCounter:
    """State transitions of an execution and of its Distributed Map's child executions.

    AWS bills a Standard workflow per state transition: each state entered, each retry of a state,
    and one for each child execution a Distributed Map starts, whose own states are billed too.
    moto runs the children without histories of their own, so states are counted where they are
    entered; a state inside a child knows its item index from the context object ($$.Map).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.parent = 0
        self.children: Counter[int] = Counter()  # item index -> states entered and retries

    def count(self, env: Any) -> None:
        item = env.states.context_object.context_object_data.get("Map")
        with self._lock:
            if item:
                self.children[item["Item"]["Index"]] += 1
            else:
                self.parent += 1

    def totals(self) -> dict[str, int]:
        with self._lock:
            child_states = sum(self.children.values())
            started = len(self.children)
            return {
                "total": self.parent + started + child_states,
                "parent": self.parent,
                "child_executions": started,
                "child_states": child_states,
            }

    def patches(self) -> list[Any]:
        counter = self
        eval_body = _state_mod.CommonStateField._eval_body
        handle_retry = _execute_state.ExecutionState._handle_retry

        def entered(self: Any, env: Any) -> Any:
            counter.count(env)
            return eval_body(self, env)

        def retried(self: Any, env: Any, failure_event: Any) -> Any:
            outcome = handle_retry(self, env, failure_event)
            if outcome == RetryOutcome.CanRetry:
                counter.count(env)
            return outcome

        return [
            mock.patch.object(_state_mod.CommonStateField, "_eval_body", entered),
            mock.patch.object(_execute_state.ExecutionState, "_handle_retry", retried),
        ]


# --------------------------------------------------------------------------------------------------
# Lambda routing
# --------------------------------------------------------------------------------------------------

Handler = Callable[[Any, Any], Any]


@dataclass
class LocalLambdaContext:
    """Enough of ``awslambdaric``'s LambdaContext for handlers and Powertools Logger/Metrics."""

    function_name: str
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    timeout_seconds: float = 900.0
    identity: Any = None
    client_context: Any = None
    # The time source: the virtual clock's time() in a workflow run (so remaining time counts the
    # handler's virtual sleeps), real time otherwise.
    now: Callable[[], float] = field(default=_real_time.monotonic, repr=False)
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        self._deadline = self.now() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self.now()) * 1000))


def _function_name(name_or_arn: str) -> str:
    """``name``, ``name:qualifier``, ``acct:function:name[:q]`` or a full ARN -> ``name``."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn.split(":")[6]
    if ":function:" in name_or_arn:
        return name_or_arn.split(":function:", 1)[1].split(":", maxsplit=1)[0]
    return name_or_arn.split(":", maxsplit=1)[0]


@dataclass
class HandlerError:
    function: str
    error_type: str
    message: str
    traceback: str


class LambdaRouter:
    """Routes moto's simple-Lambda invocations to Python callables, counting them.

    ``handlers`` maps a function name or ARN to ``handler(event, context)``. Invocations of an
    unknown function fail as a Lambda error ``ResourceNotFoundException`` (listed in
    :attr:`unknown_functions`).
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        clock: VirtualClock | None = None,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
        timeouts: Mapping[str, float] | None = None,
    ) -> None:
        self.handlers = {_function_name(k): v for k, v in handlers.items()}
        self.clock = clock
        # Each function's configured Timeout (seconds); an invocation that runs longer on the
        # clock ends as Lambda ends it: error Sandbox.Timedout, its result lost.
        self.timeouts = {_function_name(k): float(v) for k, v in (timeouts or {}).items()}
        self.durations: dict[str, list[float]] = {}  # clock seconds spent in each invocation
        self.timed_out: Counter[str] = Counter()
        self._running = threading.local()  # the function this thread is running (fault injection)
        self.region = region
        self.account = account
        self._lock = threading.Lock()
        self.invocations: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.errors: list[HandlerError] = []
        self.unknown_functions: set[str] = set()
        self.transitions = TransitionCounter()

    def invoke(self, function_name: str, body: bytes | str | None, response_headers: dict) -> bytes:
        name = _function_name(function_name)
        handler = self.handlers.get(name)
        with self._lock:
            self.invocations[name] += 1
            if handler is None:
                self.unknown_functions.add(name)
        if handler is None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return _error_body(
                "ResourceNotFoundException",
                f"sfn_local: no handler for Lambda function {name!r}; known: {sorted(self.handlers)}",
            )
        event = json.loads(body) if body else {}
        # Only a function given a Timeout is stopped at it (the workflow's, from template.yaml).
        timeout = self.timeouts.get(name)
        now = self.clock.now if self.clock else _real_time.monotonic
        context = LocalLambdaContext(
            function_name=name,
            invoked_function_arn=function_name
            if function_name.startswith("arn:")
            else function_arn(name, self.region, self.account),
            timeout_seconds=timeout or 900.0,
            now=now,
        )
        with self._lock:
            self.in_flight[name] += 1
            self.max_in_flight[name] = max(self.max_in_flight[name], self.in_flight[name])
        busy = self.clock.busy() if self.clock else contextlib.nullcontext()
        started = now()
        spent = 0.0
        try:
            with busy:
                self._running.name = name
                try:
                    result = handler(event, context)
                finally:
                    self._running.name = None
                    spent = now() - started
                    with self._lock:
                        self.durations.setdefault(name, []).append(spent)
            if timeout is not None and spent > timeout:
                raise _Timedout(f"Task timed out after {timeout:.2f} seconds")
            try:
                return json.dumps(result).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise _MarshalError(f"Unable to marshal response: {exc}") from exc
        except Exception as exc:
            error: Exception = exc
            if timeout is not None and spent > timeout:  # Lambda stopped it, whatever it was doing
                error = _Timedout(f"Task timed out after {timeout:.2f} seconds")
                with self._lock:
                    self.timed_out[name] += 1
            error_type = (
                "Runtime.MarshalError"
                if isinstance(error, _MarshalError)
                else "Sandbox.Timedout"
                if isinstance(error, _Timedout)
                else type(error).__name__
            )
            with self._lock:
                self.errors.append(HandlerError(name, error_type, str(error), traceback.format_exc()))
            response_headers["x-amz-function-error"] = "Unhandled"
            return _error_body(error_type, str(error), traceback.format_tb(exc.__traceback__))
        finally:
            with self._lock:
                self.in_flight[name] -= 1

    def running(self) -> str | None:
        """The function whose invocation the calling thread is running, if any."""
        return getattr(self._running, "name", None)

    def patch(self) -> Any:
        router = self

        def invoke(  # noqa: PLR0917 - moto calls it with these six positional arguments
            backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
        ) -> bytes:
            return router.invoke(function_name, body, response_headers)

        return mock.patch.object(LambdaSimpleBackend, "invoke", invoke)

    def client_patch(self) -> Any:
        """Step Functions' own Lambda calls run the handler in the Task's thread, not over HTTP.

        In AWS that call happens inside the service, not through any client of ours. Over a moto
        server it would be an HTTP request served by another thread: the Task's thread would stay
        busy while the handler sleeps on the virtual clock (Target back-off), and time would only
        move after ``max_stall``. So the interpreter's Lambda client answers Invoke itself, just
        before sending (botocore's before-send): the call still goes through botocore (parameters,
        events, response parsing), and the handlers' own AWS calls still go over HTTP. Under
        mock_aws, moto's own before-send answers, as before.
        """
        original = _lambda_eval_utils.boto_client_for

        def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
            client = original(region, service, state_credentials)
            if service == "lambda":
                client.meta.events.register("before-send.lambda.Invoke", self._answer_in_thread)
            return client

        return mock.patch.object(_lambda_eval_utils, "boto_client_for", boto_client_for)

    def _answer_in_thread(self, request: Any, **_: Any) -> AWSResponse | None:
        if botocore_stubber.enabled:
            return None  # mock_aws: moto's stubber answers (botocore calls every before-send handler)
        # /2015-03-31/functions/<name or ARN, URL-encoded>/invocations
        name = unquote(urlsplit(request.url).path.split("/functions/", 1)[1].rsplit("/invocations", 1)[0])
        body = request.body.read() if hasattr(request.body, "read") else request.body
        headers: dict[str, str] = {"x-amz-executed-version": "$LATEST"}
        payload = self.invoke(name, body, headers)
        return AWSResponse(request.url, 200, headers, _RawBody(payload))


class _RawBody(io.BytesIO):
    """What botocore reads an answer from (urllib3's stream())."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        while chunk := self.read(65536):
            yield chunk


class _MarshalError(Exception):
    pass


class _Timedout(Exception):
    """The invocation ran past its function's Timeout (Lambda stops it and reports Sandbox.Timedout)."""


def _error_body(error_type: str, message: str, stack: list[str] | None = None) -> bytes:
    payload: dict[str, Any] = {"errorType": error_type, "errorMessage": message}
    if stack:
        payload["stackTrace"] = stack
    return json.dumps(payload).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# The environment and the runner
# --------------------------------------------------------------------------------------------------

_ENV_LOCK = threading.Lock()
_active: list[LambdaRouter] = []  # the router of the running environment (one at a time)


def running_function() -> str | None:
    """The Lambda function the calling thread runs inside the active environment (None outside).

    Lets a test inject a fault into one step's AWS calls, as a throttled call of that step."""
    return _active[0].running() if _active else None


@contextlib.contextmanager
def sfn_local(
    handlers: Mapping[str, Handler],
    *,
    clock: VirtualClock | None = None,
    region: str = DEFAULT_REGION,
    timeouts: Mapping[str, float] | None = None,
) -> Iterator[LambdaRouter]:
    """Everything needed to execute state machines locally, for the duration of the block.

    Uses the in-process moto server AWS_ENDPOINT_URL points at (stack.AwsServer), else starts
    ``mock_aws`` if none is active (a test's own ``mock_aws`` is reused, so its S3/DynamoDB
    data is visible to handlers and to the interpreter), switches moto's config to
    :data:`SFN_LOCAL_CONFIG`, routes Lambda invocations to ``handlers`` and moto's waits to
    ``clock``. Not reentrant: one environment at a time per process.
    """
    if not _ENV_LOCK.acquire(blocking=False):
        raise RuntimeError("sfn_local environments cannot be nested or run concurrently")
    router = LambdaRouter(handlers, clock=clock, region=region, timeouts=timeouts)
    try:
        with contextlib.ExitStack() as stack:
            if os.environ.get("AWS_ENDPOINT_URL"):
                # A moto server in this process (stack.AwsServer): the interpreter reaches
                # Lambda over HTTP at localhost:MOTO_PORT, and these patches apply to its backends.
                if not os.environ.get("MOTO_PORT"):
                    raise RuntimeError("sfn_local over a moto server needs MOTO_PORT (AwsServer.env())")
            elif not botocore_stubber.enabled:
                stack.enter_context(moto.mock_aws())
            stack.enter_context(mock.patch.dict(default_user_config, SFN_LOCAL_CONFIG))
            stack.enter_context(router.patch())
            stack.enter_context(router.client_patch())
            for patcher in [
                *_patch_sfn_integration(),
                *_patch_map_run_failures(),
                *router.transitions.patches(),
            ]:
                stack.enter_context(patcher)
            if clock is not None:
                for patcher in _clock_patches(clock):
                    stack.enter_context(patcher)
            _active[:] = [router]
            try:
                yield router
            finally:
                _active.clear()
                # moto keeps every worker thread it ever started in this list.
                _sfn_utils.TMP_THREADS[:] = [t for t in _sfn_utils.TMP_THREADS if t.is_alive()]
    finally:
        _ENV_LOCK.release()


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:-]+)\}")


def substitute(definition: str, substitutions: Mapping[str, str] | None) -> str:
    """Replace ``${Name}`` placeholders as SAM's ``DefinitionSubstitutions`` do (all must be given)."""
    substitutions = substitutions or {}
    missing = sorted({m for m in _PLACEHOLDER.findall(definition) if m not in substitutions})
    if missing:
        raise KeyError(f"definition placeholders without a substitution: {missing}")
    return _PLACEHOLDER.sub(lambda m: str(substitutions[m.group(1)]), definition)


@dataclass
class ExecutionResult:
    execution_arn: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    history: list[dict[str, Any]]
    invocations: dict[str, int]
    max_concurrency: dict[str, int]
    handler_errors: list[HandlerError]
    real_seconds: float
    simulated_seconds: float | None
    # Clock seconds spent inside each invocation, per function; invocations over their Timeout.
    invocation_seconds: dict[str, list[float]] = field(default_factory=dict)
    timed_out: dict[str, int] = field(default_factory=dict)
    # Billed state transitions: parent, child executions started, their states (TransitionCounter).
    transitions: dict[str, int] = field(default_factory=dict)

    @property
    def state_transitions(self) -> int:
        """States entered in the parent's history (without retries and Distributed Map children:
        see `transitions` for what AWS bills)."""
        return sum(1 for e in self.history if e["type"].endswith("StateEntered"))

    @property
    def history_limit_exceeded(self) -> bool:
        return len(self.history) > HISTORY_EVENT_LIMIT

    def states_entered(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e
        ]

    def events(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.history if e["type"] == type_]

    def describe(self) -> str:
        """A short human-readable summary, for assertion messages and the CLI."""
        lines = [
            f"{self.status} in {self.real_seconds:.2f}s real"
            + (f", {self.simulated_seconds:.0f}s simulated" if self.simulated_seconds is not None else ""),
            f"  error={self.error!r} cause={(self.cause or '')[:500]!r}",
            f"  invocations={dict(self.invocations)} transitions={self.state_transitions} "
            f"events={len(self.history)}",
        ]
        lines += [
            f"  handler error {e.function}: {e.error_type}: {e.message}" for e in self.handler_errors[:5]
        ]
        return "\n".join(lines)


class LocalStateMachine:
    """A state machine definition plus its local Lambda handlers, runnable in moto.

    ``definition`` is ASL text, a dict, or a path to a ``.asl.json`` file; ``${...}`` placeholders
    are replaced from ``substitutions``. ``handlers`` maps function names or ARNs to callables.
    """

    def __init__(
        self,
        definition: str | Mapping[str, Any] | Path,
        handlers: Mapping[str, Handler],
        *,
        substitutions: Mapping[str, str] | None = None,
        clock: VirtualClock | None = None,
        name: str = "local-state-machine",
        region: str = DEFAULT_REGION,
        role_arn: str = DUMMY_ROLE_ARN,
        timeout: float = 120.0,
        poll_interval: float = 0.005,
        timeouts: Mapping[str, float] | None = None,
    ) -> None:
        if isinstance(definition, Path):
            definition = definition.read_text()
        if not isinstance(definition, str):
            definition = json.dumps(definition)
        self.definition = substitute(definition, substitutions)
        self.handlers = dict(handlers)
        self.clock = clock
        self.name = name
        self.region = region
        self.role_arn = role_arn
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.timeouts = dict(timeouts or {})  # function name -> its Timeout in seconds
        self.extra_state_machines: dict[str, str] = {}

    def add_child(self, name: str, definition: str | Mapping[str, Any] | Path, **subs: str) -> str:
        """Register another state machine (e.g. a child for ``startExecution.sync:2``); returns its ARN."""
        if isinstance(definition, Path):
            definition = definition.read_text()
        if not isinstance(definition, str):
            definition = json.dumps(definition)
        self.extra_state_machines[name] = substitute(definition, subs)
        return f"arn:aws:states:{self.region}:{DEFAULT_ACCOUNT}:stateMachine:{name}"

    def run(self, execution_input: Any = None, *, execution_name: str | None = None) -> ExecutionResult:
        """Create the state machine(s), execute with ``execution_input``, wait, collect the result."""
        with sfn_local(self.handlers, clock=self.clock, region=self.region, timeouts=self.timeouts) as router:
            sfn = boto3.client("stepfunctions", region_name=self.region)
            for child_name, child_def in self.extra_state_machines.items():
                _create_or_update(sfn, child_name, child_def, self.role_arn)
            arn = _create_or_update(sfn, self.name, self.definition, self.role_arn)
            sim_start = self.clock.now() if self.clock else None
            t0 = _real_time.monotonic()
            execution_arn = sfn.start_execution(
                stateMachineArn=arn,
                name=execution_name or str(uuid.uuid4()),  # moto names it "None" otherwise
                input=json.dumps({} if execution_input is None else execution_input),
            )["executionArn"]
            while True:
                described = sfn.describe_execution(executionArn=execution_arn)
                if described["status"] != "RUNNING":
                    break
                if _real_time.monotonic() - t0 > self.timeout:
                    sfn.stop_execution(executionArn=execution_arn, error="SfnLocal.Timeout")
                    history = sfn.get_execution_history(executionArn=execution_arn)["events"]
                    raise TimeoutError(
                        f"execution still RUNNING after {self.timeout}s real time; last events: "
                        f"{[e['type'] for e in history[-10:]]}"
                    )
                _real_time.sleep(self.poll_interval)
            real_seconds = _real_time.monotonic() - t0
            # moto returns the whole history in one page (no pagination).
            history = sfn.get_execution_history(executionArn=execution_arn)["events"]
            output = described.get("output")
            return ExecutionResult(
                execution_arn=execution_arn,
                status=described["status"],
                output=json.loads(output) if output is not None else None,
                error=described.get("error"),
                cause=described.get("cause"),
                history=history,
                invocations=dict(router.invocations),
                max_concurrency=dict(router.max_in_flight),
                handler_errors=list(router.errors),
                invocation_seconds={name: list(d) for name, d in router.durations.items()},
                timed_out=dict(router.timed_out),
                real_seconds=real_seconds,
                simulated_seconds=(self.clock.now() - sim_start)
                if self.clock and sim_start is not None
                else None,
                transitions=router.transitions.totals(),
            )


def _create_or_update(sfn: Any, name: str, definition: str, role_arn: str) -> str:
    for sm in sfn.list_state_machines()["stateMachines"]:
        if sm["name"] == name:
            sfn.update_state_machine(stateMachineArn=sm["stateMachineArn"], definition=definition)
            return sm["stateMachineArn"]
    return sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn)["stateMachineArn"]


def run_state_machine(
    definition: str | Mapping[str, Any] | Path,
    handlers: Mapping[str, Handler],
    execution_input: Any = None,
    **kwargs: Any,
) -> ExecutionResult:
    """One-shot helper: ``LocalStateMachine(definition, handlers, **kwargs).run(execution_input)``."""
    return LocalStateMachine(definition, handlers, **kwargs).run(execution_input)
