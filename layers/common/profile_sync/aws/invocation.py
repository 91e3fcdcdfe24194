"""What every workflow handler wraps its step in: the invocation's remaining time, and AWS errors
that are worth a retry surfaced under one name the state machine retries by (TransientAwsError).

botocore retries throttling and 5xx a few times itself; what is left after that reaches the
handler as a ClientError whose code says whether a later try can succeed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from profile_sync import clock

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
