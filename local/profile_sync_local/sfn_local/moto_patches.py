"""The patches on moto's Step Functions interpreter (pinned moto: see ``MOTO_VERSION`` in the package).

* :func:`clock_patches`: Wait states, Retry back-off and ``.sync`` polls sleep on the
  :class:`~.clock.VirtualClock`; the threads that evaluate states are busy on it, the threads that
  wait for them are idle (with a hand-off, so no spurious idle window opens); history events carry
  virtual timestamps.
* :func:`map_run_failure_patches`: a Distributed Map run fails past its tolerated failures, as on AWS.
* :func:`sfn_integration_patches`: ``states:startExecution[.sync[:2]]``, which moto 5.2.5 cannot run
  as shipped.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time as _real_time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any
from unittest import mock

import botocore.session
from botocore import xform_name
from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl as _retrier_decl
from moto.stepfunctions.parser.asl.component.program.program import Program as _Program
from moto.stepfunctions.parser.asl.component.state import state as _state_mod
from moto.stepfunctions.parser.asl.component.state.exec import execute_state as _execute_state
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
    distributed_iteration_component as _distributed,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import job as _job
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (  # noqa: E501
    DistributedItemProcessorWorker as _DistributedItemProcessorWorker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iteration_worker import (
    IterationWorker as _IterationWorker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator.distributed_iterator_worker import (  # noqa: E501
    DistributedIteratorWorker as _DistributedIteratorWorker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branch_worker as _branch_worker
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl as _branches_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback as _callback_mod,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import timestamp as _timestamp_mod
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import (
    wait_function as _wait_function_mod,
)
from moto.stepfunctions.parser.asl.eval import count_down_latch as _latch_mod
from moto.stepfunctions.parser.asl.eval.event import event_manager as _event_manager_mod
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

from profile_sync_local.sfn_local.clock import VirtualClock

SFN_LOCAL_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
"""moto config that makes Step Functions execute definitions and Lambda use the simple backend."""

_UTC = _dt.UTC


class _ClockTimeModule:
    """Stand-in for the ``time`` module inside one moto module: sleep goes to the virtual clock."""

    def __init__(self, sleep: Callable[[float], None]) -> None:
        self.sleep = sleep
        self.time = _real_time.time
        self.monotonic = _real_time.monotonic


def clock_patches(clock: VirtualClock) -> list[Any]:
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
        # moto passes target by keyword.
        return threading.Thread(*args, target=busy_wrapper(target) if target else None, **kwargs)  # type: ignore[misc]

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


def map_run_failure_patches() -> list[Any]:
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
                    event_details=EventDetails(  # type: ignore[typeddict-item] # moto declares every key
                        mapRunFailedEventDetails=MapRunFailedEventDetails(
                            error=error.to_name(),
                            cause=f"The specified tolerated failure threshold was exceeded: "
                            f"{failed} of {total} child executions failed",
                        )
                    ),
                )
            )

    return [mock.patch.object(_distributed.DistributedIterationComponent, "_map_run", map_run)]


def sfn_integration_patches() -> list[Any]:
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
