"""Lambda routing: moto's simple-Lambda invocations run in-process Python handlers.

A raised exception comes back as a Lambda *function error* (``x-amz-function-error: Unhandled``,
body ``{"errorType": <exception class name>, "errorMessage": str(exc)}``), so ``Retry``/``Catch``
match on the class name exactly as on AWS.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time as _real_time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from urllib.parse import unquote, urlsplit

from botocore.awsrequest import AWSResponse
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.models import botocore_stubber
from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
    lambda_eval_utils as _lambda_eval_utils,
)

from profile_sync_local.sfn_local.clock import VirtualClock
from profile_sync_local.sfn_local.transitions import TransitionCounter

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"


def function_arn(name: str, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> str:
    """The Lambda ARN moto's account/region would give function ``name``."""
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


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
                # A before-send handler may return the response (the stubs say None).
                client.meta.events.register(
                    "before-send.lambda.Invoke",
                    self._answer_in_thread,  # type: ignore[arg-type]
                )
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
        return AWSResponse(request.url, 200, headers, _RawBody(payload))  # type: ignore[arg-type] # any mapping


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
