"""What every handler wraps its work in: Powertools (LambdaFunction), the invocation's remaining
time, and AWS errors that are worth a retry surfaced under one name the state machine retries by
(TransientAwsError).

botocore retries throttling and 5xx a few times itself; what is left after that reaches the
handler as a ClientError whose code says whether a later try can succeed.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from profile_sync import clock, telemetry
from profile_sync.aws.ports import take_target_stats

E = TypeVar("E")
R = TypeVar("R")

# Error codes AWS services answer when the same request may succeed later.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "InternalServerError",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "KMSThrottlingException",
    }
)


class TransientAwsError(Exception):
    """An AWS call failed in a way a later try can fix (throttling, a 5xx, a dropped connection).

    The state machine retries every Task on this name with back-off.
    """


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error.get("Code") in TRANSIENT_CODES or status >= 500
    return isinstance(
        exc, (ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError)
    )


@contextlib.contextmanager
def workflow_step(context: Any) -> Iterator[None]:
    """Run a step inside one Lambda invocation: time_left() answers from the Lambda context, and a
    transient AWS error is raised again as TransientAwsError (its code and operation in the message)."""
    with clock.invocation(lambda: context.get_remaining_time_in_millis() / 1000):
        try:
            yield
        except Exception as exc:
            if not is_transient(exc):
                raise
            if isinstance(exc, ClientError):
                code = exc.response.get("Error", {}).get("Code", "?")
                raise TransientAwsError(f"{exc.operation_name}: {code}: {exc}") from exc
            raise TransientAwsError(f"{type(exc).__name__}: {exc}") from exc


class LambdaFunction:
    """One Lambda function's Powertools Logger, Tracer and Metrics, and what wraps each invocation.

    `handler` gives the function's step the Lambda context (time_left()), the correlation id (the
    job id) on every log line, the batch index when there is one, X-Ray, metrics flushed once per
    invocation, and when it calls Target the client's call figures as metrics, also when it fails.
    """

    def __init__(
        self,
        *,
        correlation_id_path: str | None = "jobId",
        calls_target: bool = False,
        workflow_step: bool = True,
    ) -> None:
        self.logger = Logger()
        self.tracer = Tracer()  # X-Ray: the handler, and every AWS and HTTP call (Powertools patches them)
        self.metrics = Metrics()
        self.correlation_id_path = correlation_id_path
        self.calls_target = calls_target
        self.workflow_step = workflow_step
        if calls_target:
            # The domain package's own lines (the Target client's retries, re-minting) as JSON with
            # the job id, like the handler's: its loggers are children of "profile_sync".
            copy_config_to_registered_loggers(source_logger=self.logger, include={"profile_sync"})

    def handler(self, step: Callable[[E, LambdaContext], R]) -> Callable[[E, LambdaContext], R]:
        @functools.wraps(step)
        def invoke(event: E, context: LambdaContext) -> R:
            batch = event.get("batch") if isinstance(event, dict) else None
            if isinstance(batch, dict) and "batchIndex" in batch:
                self.logger.append_keys(batch=batch["batchIndex"])
            with workflow_step(context) if self.workflow_step else contextlib.nullcontext():
                try:
                    return step(event, context)
                finally:
                    if self.calls_target:
                        telemetry.add_target_calls(self.metrics, take_target_stats())

        with_metrics = self.metrics.log_metrics(invoke)
        traced = self.tracer.capture_lambda_handler(with_metrics, capture_response=False)
        return self.logger.inject_lambda_context(
            traced, correlation_id_path=self.correlation_id_path, clear_state=True
        )
