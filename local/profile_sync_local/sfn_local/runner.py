"""The environment (:func:`sfn_local`) and the runner (:class:`LocalStateMachine`) of a local execution."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time as _real_time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from unittest import mock

import boto3
import moto
from moto.core.config import default_user_config
from moto.core.models import botocore_stubber
from moto.stepfunctions.parser import utils as _sfn_utils

from profile_sync_local.sfn_local.clock import VirtualClock
from profile_sync_local.sfn_local.lambda_router import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    Handler,
    HandlerError,
    LambdaRouter,
)
from profile_sync_local.sfn_local.moto_patches import (
    SFN_LOCAL_CONFIG,
    clock_patches,
    map_run_failure_patches,
    sfn_integration_patches,
)

DUMMY_ROLE_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/sfn-local"
HISTORY_EVENT_LIMIT = 25_000
"""AWS's hard limit of events in one Standard execution's history (moto does not enforce it)."""

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
                *sfn_integration_patches(),
                *map_run_failure_patches(),
                *router.transitions.patches(),
            ]:
                stack.enter_context(patcher)
            if clock is not None:
                for patcher in clock_patches(clock):
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
                history=cast("list[dict[str, Any]]", history),
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
