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
  cannot run as shipped (see :func:`.moto_patches.sfn_integration_patches`).

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

Modules: :mod:`.clock` (the virtual clock), :mod:`.moto_patches` (what is patched in moto's
interpreter), :mod:`.transitions` (billed state transitions), :mod:`.lambda_router` (in-process
Lambda), :mod:`.runner` (the environment and :class:`LocalStateMachine`).
"""

import moto

MOTO_VERSION = "5.2.5"
"""The moto release the patches in :mod:`.moto_patches` were written against (checked at import time)."""

if moto.__version__ != MOTO_VERSION:  # pragma: no cover - guard
    raise ImportError(
        f"profile_sync_local.sfn_local patches moto internals and was written for moto {MOTO_VERSION}; "
        f"found moto {moto.__version__}. Re-check the patched functions (see sfn_local.moto_patches) and "
        "update MOTO_VERSION."
    )

# Imported after the version check: these modules patch moto internals.
from profile_sync_local.sfn_local.clock import VirtualClock  # noqa: E402
from profile_sync_local.sfn_local.lambda_router import (  # noqa: E402
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    Handler,
    HandlerError,
    LambdaRouter,
    LocalLambdaContext,
    function_arn,
)
from profile_sync_local.sfn_local.moto_patches import SFN_LOCAL_CONFIG  # noqa: E402
from profile_sync_local.sfn_local.runner import (  # noqa: E402
    DUMMY_ROLE_ARN,
    HISTORY_EVENT_LIMIT,
    ExecutionResult,
    LocalStateMachine,
    run_state_machine,
    running_function,
    sfn_local,
    substitute,
)
from profile_sync_local.sfn_local.transitions import TransitionCounter  # noqa: E402

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_REGION",
    "DUMMY_ROLE_ARN",
    "HISTORY_EVENT_LIMIT",
    "MOTO_VERSION",
    "SFN_LOCAL_CONFIG",
    "ExecutionResult",
    "Handler",
    "HandlerError",
    "LambdaRouter",
    "LocalLambdaContext",
    "LocalStateMachine",
    "TransitionCounter",
    "VirtualClock",
    "function_arn",
    "run_state_machine",
    "running_function",
    "sfn_local",
    "substitute",
]
