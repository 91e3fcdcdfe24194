"""What a job would cost in AWS: list prices, the requests a run made, and the bill they add up to.

Counted on the run itself: state transitions (parent and every child execution, as billed), each
Lambda invocation's measured duration at its function's configured memory (template.yaml), and every
S3, DynamoDB and SNS request the handlers sent (botocore calls, counted by operation). Not counted:
storage, CloudWatch logs and metrics, data transfer to Target, free tiers, Secrets Manager.
Durations are measured on this machine, with Target answering on loopback: a Lambda's CPU share
at 512-1024 MB is smaller and Target's answers are slower, so they are an estimate.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from unittest import mock

import botocore.client
from requests.adapters import HTTPAdapter

from profile_sync_local.stack.project import template

# List prices, US East (N. Virginia), on-demand, x86_64, as published on the AWS pricing pages.
PRICES: dict[str, Any] = {
    "as_of": "2026-12-02",
    "region": "us-east-1",
    "usd": {
        "step_functions_standard_transition": 0.025 / 1000,
        "lambda_gb_second": 0.0000166667,
        "lambda_request": 0.20 / 1_000_000,
        "s3_put_copy_post_list_request": 0.005 / 1000,
        "s3_get_and_other_request": 0.0004 / 1000,
        "dynamodb_write_request_unit": 0.625 / 1_000_000,  # on-demand (since Nov 2024)
        "dynamodb_read_request_unit": 0.125 / 1_000_000,
        "sns_publish_request": 0.50 / 1_000_000,
    },
}

_S3_PUT_CLASS = {
    "PutObject",
    "CopyObject",
    "PostObject",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
    "ListMultipartUploads",
    "ListParts",
}
_S3_FREE = {"DeleteObject", "DeleteObjects", "AbortMultipartUpload"}
_DYNAMO_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
_DYNAMO_READS = {"GetItem", "Query", "Scan"}


class Tally(dict[str, float]):
    """A Counter whose counts may be fractional (half read units, seconds): 0 for a missing key."""

    def __missing__(self, key: str) -> float:
        return 0

    def add(self, counts: Mapping[str, float]) -> None:
        for key, value in counts.items():
            self[key] += value


class AwsRequests:
    """S3, DynamoDB and SNS requests of every boto3 client in this process, by request class."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = Tally()
        self.on = True

    def note(self, service: str, operation: str, params: dict, response: Any) -> None:
        if not self.on:
            return
        kinds = Tally()
        if service == "s3" and operation not in _S3_FREE:
            kinds["s3_put" if operation in _S3_PUT_CLASS else "s3_get"] += 1
        elif service == "dynamodb":
            if operation in _DYNAMO_WRITES:
                kinds["dynamodb_wru"] += 1  # items here are under 1 KB
            elif operation == "BatchWriteItem":
                kinds["dynamodb_wru"] += sum(len(v) for v in params.get("RequestItems", {}).values())
            elif operation in _DYNAMO_READS:
                # One unit per 4 KB read (strongly consistent), half for eventually consistent.
                size = len(repr(response.get("Items", response.get("Item", ""))))
                units = max(1, math.ceil(size / 4096))
                kinds["dynamodb_rru"] += units if params.get("ConsistentRead") else units / 2
        elif service == "sns" and operation == "Publish":
            kinds["sns_publish"] += 1
        if kinds:
            with self._lock:
                self.counts.add(kinds)

    @contextlib.contextmanager
    def observing(self) -> Iterator[AwsRequests]:
        # Every client's calls pass through this private method; the stubs leave it out.
        original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
        requests = self

        def counted(client: Any, operation: str, params: dict) -> Any:
            response = original(client, operation, params)
            service = client.meta.service_model.service_name
            with contextlib.suppress(Exception):  # counting must never break a call
                requests.note(service, operation, params, response)
            return response

        botocore.client.BaseClient._make_api_call = counted  # type: ignore[attr-defined]
        try:
            yield self
        finally:
            botocore.client.BaseClient._make_api_call = original  # type: ignore[attr-defined]


_WAITING: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("target_wait", default=None)


class LambdaDurations:
    """Each invocation's measured duration, by function (the names the state machine uses), and the
    part of it spent waiting for Target's answers (Lambda bills it; it is Target's time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, list[float]] = {}
        self.target_seconds = Tally()

    def add(self, name: str, seconds: float, target_seconds: float = 0.0) -> None:
        with self._lock:
            self.seconds.setdefault(name, []).append(seconds)
            self.target_seconds[name] += target_seconds

    @contextlib.contextmanager
    def timing(self, name: str) -> Iterator[None]:
        waited: list[float] = []
        token = _WAITING.set(waited)
        start = time.perf_counter()
        try:
            yield
        finally:
            _WAITING.reset(token)
            self.add(name, time.perf_counter() - start, sum(waited))

    @staticmethod
    @contextlib.contextmanager
    def observing_target() -> Iterator[None]:
        """Time every HTTP call (the functions' HTTP calls all go to Target) of the running invocation."""
        send = HTTPAdapter.send

        def timed(adapter: HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return send(adapter, request, *args, **kwargs)
            finally:
                waited = _WAITING.get()
                if waited is not None:
                    waited.append(time.perf_counter() - start)

        with mock.patch.object(HTTPAdapter, "send", timed):
            yield

    def wrap(self, handlers: dict[str, Callable]) -> dict[str, Callable]:
        def timed(name: str, handler: Callable) -> Callable:
            def run(event: dict, context: object) -> Any:
                with self.timing(name):
                    return handler(event, context)

            return run

        return {name: timed(name, handler) for name, handler in handlers.items()}


def memory_mb() -> dict[str, int]:
    """MemorySize of each function in template.yaml (its own, else the Globals'), by short name."""
    doc = template()
    default = int(doc["Globals"]["Function"].get("MemorySize", 128))
    return {
        logical.removesuffix("Function"): int(res.get("Properties", {}).get("MemorySize", default))
        for logical, res in doc["Resources"].items()
        if res.get("Type") == "AWS::Serverless::Function"
    }


def job_cost(transitions: int, durations: LambdaDurations, requests: AwsRequests) -> dict:
    """The bill of one job, item by item, in USD, with the quantities it comes from."""
    usd = PRICES["usd"]
    memory = memory_mb()
    gb_seconds = target_gb_seconds = 0.0
    invocations = 0
    for name, seconds in durations.seconds.items():
        gb = memory.get(name, 128) / 1024
        # Lambda bills each invocation's duration rounded up to the millisecond.
        gb_seconds += gb * sum(math.ceil(s * 1000) / 1000 for s in seconds)
        target_gb_seconds += gb * durations.target_seconds[name]
        invocations += len(seconds)
    waiting = target_gb_seconds * usd["lambda_gb_second"]
    counts = requests.counts
    items = {
        "step_functions": transitions * usd["step_functions_standard_transition"],
        "lambda_duration": gb_seconds * usd["lambda_gb_second"],
        "lambda_requests": invocations * usd["lambda_request"],
        "s3_requests": counts["s3_put"] * usd["s3_put_copy_post_list_request"]
        + counts["s3_get"] * usd["s3_get_and_other_request"],
        "dynamodb_requests": counts["dynamodb_wru"] * usd["dynamodb_write_request_unit"]
        + counts["dynamodb_rru"] * usd["dynamodb_read_request_unit"],
        "sns_requests": counts["sns_publish"] * usd["sns_publish_request"],
    }
    total = sum(items.values())
    return {
        "usd": round(total, 6),
        # The same without the Lambda time spent waiting for Target's answers (Target's own time).
        "usd_without_target_time": round(total - waiting, 6),
        "items_usd": {k: round(v, 6) for k, v in items.items()},
        "quantities": {
            "state_transitions": transitions,
            "lambda_invocations": invocations,
            "lambda_gb_seconds": round(gb_seconds, 3),
            "lambda_seconds": {k: round(sum(v), 3) for k, v in durations.seconds.items()},
            "lambda_seconds_waiting_for_target": {
                k: round(v, 3) for k, v in durations.target_seconds.items()
            },
            "s3_put_class_requests": counts["s3_put"],
            "s3_get_class_requests": counts["s3_get"],
            "dynamodb_write_units": counts["dynamodb_wru"],
            "dynamodb_read_units": counts["dynamodb_rru"],
            "sns_publishes": counts["sns_publish"],
        },
        "prices": {"as_of": PRICES["as_of"], "region": PRICES["region"]},
    }


def format_cost(cost: dict) -> list[str]:
    q, items, prices = cost["quantities"], cost["items_usd"], cost["prices"]
    return [
        f"  AWS cost ~${cost['usd']:.4f} ({prices['region']} list prices of {prices['as_of']}): "
        f"Step Functions ${items['step_functions']:.4f}, "
        f"Lambda ${items['lambda_duration'] + items['lambda_requests']:.4f} "
        f"({q['lambda_gb_seconds']} GB-s measured here), S3 ${items['s3_requests']:.4f}, "
        f"DynamoDB ${items['dynamodb_requests']:.4f}, SNS ${items['sns_requests']:.6f}; "
        f"${cost['usd_without_target_time']:.4f} without the Lambda time spent waiting for Target"
    ]
