"""The fault matrix of issue 9: the real state machine, handlers and Target client against the
emulator, one fault per scenario. In every scenario the row account holds, Target took each batch
at most once (exactly once where it was sent), and each row ends as the scenario implies.

Run with `-s` to see the matrix (outcome counts, Target calls, state transitions) per scenario.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from botocore.endpoint import Endpoint
from flask import has_request_context
from flask import request as served
from moto.dynamodb.exceptions import DynamodbException
from moto.dynamodb.models import DynamoDBBackend
from moto.s3.exceptions import S3ClientError
from moto.s3.models import S3Backend

from profile_sync import clock
from profile_sync.adobe_target.client import TargetClient
from profile_sync.outcomes import MAYBE_ACCEPTED_REASON
from profile_sync_local import run as local_run
from profile_sync_local.sfn_local.runner import running_function
from profile_sync_local.stack.project import function_timeouts
from tests.workflow.conftest import CLIENT
from tests.workflow.test_scenarios import (  # noqa: F401 - token_secret is a fixture
    ACCOUNT,
    assert_accounted,
    run_job,
    token_secret,
    visitor_id,
    visitors,
)

ROWS, BATCH_ROWS = 10, 4  # three batches: 4 + 4 + 2 rows, sent one at a time
BATCH_OF_ROW = {i: (i - 1) // BATCH_ROWS + 1 for i in range(1, ROWS + 1)}
MATRIX: list[dict] = []


@dataclass
class Scenario:
    name: str
    setup: Callable[..., None] = lambda pipeline, request: None
    # Each row's outcome (by row number 1-10) and reason prefix, or None for "succeeded".
    outcome: Callable[[int], tuple[str, str] | None] = lambda row: None
    status: str = "COMPLETE"
    taken: set[int] = field(default_factory=lambda: {1, 2, 3})  # batches Target took, once each
    folders: str = ""
    body: bytes | None = None
    over_time_allowed: bool = False  # the scenario kills an invocation at its timeout on purpose


def _token(pipeline, request) -> None:
    request.getfixturevalue("token_secret")


def _revoked(pipeline, request) -> None:
    _token(pipeline, request)
    pipeline.emulator.revoke_token()


def _timeout_after_post(pipeline, request) -> None:
    """The first SubmitBatch Lambda posts its batch, then runs out of time before it records it."""
    monkeypatch = request.getfixturevalue("monkeypatch")
    post = TargetClient.submit_batch
    killed: list[bool] = []

    def post_then_stall(self, body, **kwargs):
        result = post(self, body, **kwargs)
        if not killed:
            killed.append(True)
            clock.pause(function_timeouts()["SubmitBatch"] + 1)  # Lambda stops it here
            raise RuntimeError("the invocation was stopped at its timeout")
        return result

    monkeypatch.setattr(TargetClient, "submit_batch", post_then_stall)


def _first_batch(outcome: str, reason: str) -> Callable[[int], tuple[str, str] | None]:
    return lambda row: (outcome, reason) if BATCH_OF_ROW[row] == 1 else None


def _every_row(outcome: str, reason: str) -> Callable[[int], tuple[str, str] | None]:
    return lambda row: (outcome, reason)


def _reserved(char: str, api: str) -> Scenario:
    value = f"a{char}b"
    rows = "".join(f"{visitor_id(i)},{value},{i}\n" for i in range(1, ROWS + 1))

    def setup(pipeline, request) -> None:
        if api == "single":
            for i in range(1, ROWS + 1):
                pipeline.emulator.store.put(CLIENT, "thirdPartyId", visitor_id(i), {"tier": "old"})

    return Scenario(
        f"value with {char!r} ({api}, raw mode)",
        setup,
        folders=("api=single/" if api == "single" else "") + "mode=raw/",
        body=f"thirdPartyId,tier,value\n{rows}".encode(),
        taken=set() if api == "single" else {1, 2, 3},
    )


AUTH = "Target refused authentication: HTTP 401 from POST"
SCENARIOS = [
    Scenario("raw answers (Adobe's shape)"),
    Scenario("escaped answers", lambda p, r: p.emulator.configure(escaped_xml=True)),
    Scenario("500s on half the calls", lambda p, r: p.emulator.configure(error_500_share=0.5, seed=3)),
    Scenario("503 storm (12 answers)", lambda p, r: p.emulator.queue_faults("*", *["503"] * 12)),
    Scenario(
        "read timeout after the body was sent",
        lambda p, r: (
            p.setting(http_timeout_seconds=0.3),
            p.emulator.configure(slow_fault_seconds=1.0),
            p.emulator.queue_faults("batchUpdate", "accept_stall"),
        ),
        _first_batch("pending", MAYBE_ACCEPTED_REASON),
        "COMPLETE_WITH_ERRORS",
    ),
    Scenario(
        "unreadable 2xx, status URL in it",
        lambda p, r: p.emulator.queue_faults("batchUpdate", "accept_truncated"),
    ),
    Scenario(
        "unreadable 2xx, no status URL",
        lambda p, r: p.emulator.queue_faults("batchUpdate", "accept_garbage"),
        _first_batch("pending", MAYBE_ACCEPTED_REASON),
        "COMPLETE_WITH_ERRORS",
    ),
    Scenario(
        "SubmitBatch timeout after its POST",
        _timeout_after_post,
        _first_batch("pending", MAYBE_ACCEPTED_REASON),
        "COMPLETE_WITH_ERRORS",
        over_time_allowed=True,
    ),
    Scenario(
        "stuck",
        lambda p, r: p.emulator.configure(stuck_share=1.0),
        _every_row("failed", "Target reported the batch stuck"),
        "COMPLETE_WITH_ERRORS",
    ),
    Scenario(
        "vanished status",
        lambda p, r: p.emulator.configure(vanish_share=1.0, vanish_after_polls=0),
        _every_row("pending", "Target no longer reports a status"),
        "COMPLETE_WITH_ERRORS",
    ),
    Scenario(
        "401 forever",
        _revoked,
        lambda row: (
            ("failed", AUTH)
            if BATCH_OF_ROW[row] == 1
            else ("pending", "not sent to Target: the job stopped. " + AUTH)
        ),
        "FAILED",
        taken=set(),
    ),
    Scenario(
        "401 once, then fine", lambda p, r: (_token(p, r), p.emulator.queue_faults("batchUpdate", "401"))
    ),
    Scenario(
        "status URL on a foreign host",
        lambda p, r: p.emulator.configure(status_url_base="https://status.example.com"),
        _every_row("pending", "Target accepted the batch; its status could not be read: "),
        "COMPLETE_WITH_ERRORS",
    ),
    *[_reserved(char, api) for char in "&#?=+" for api in ("v2", "single")],
]


@pytest.fixture(scope="module", autouse=True)
def matrix_table():
    yield
    if not MATRIX:
        return
    head = ("scenario", *ACCOUNT[3:], "Target calls", "transitions", "status")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in MATRIX:
        lines.append(
            "| "
            + " | ".join(
                [
                    row["name"],
                    *(str(row["counts"][n]) for n in ACCOUNT[3:]),
                    row["calls"],
                    str(row["transitions"]),
                    row["status"],
                ]
            )
            + " |"
        )
    print("\n\nFault matrix (10 rows, batches of 4 + 4 + 2):\n" + "\n".join(lines))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_fault_matrix(pipeline, request, scenario: Scenario):
    pipeline.setting(batch_max_rows=BATCH_ROWS, max_concurrency=1, poll_initial_delay_seconds=30)
    scenario.setup(pipeline, request)
    body = scenario.body or visitors(ROWS)

    run = pipeline.run(body, folders=scenario.folders)

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == scenario.status, (run.job.get("reason"), run.batches)
    counts = assert_accounted(pipeline, run)
    # Target took each batch it was sent exactly once, whatever went wrong around the POST.
    taken = pipeline.emulator.received_batches()
    assert sorted(taken.values()) == [1] * len(scenario.taken), taken
    assert not pipeline.emulator.resent_batches()
    # Each row: the outcome the scenario implies, with its reason (rows Target counted without
    # naming them never occur here: the emulator names its failures).
    listed = {r["id"]: r for r in pipeline.report_rows(run.job)}
    for row in range(1, ROWS + 1):
        expected = scenario.outcome(row)
        got = listed.get(visitor_id(row))
        if expected is None:
            assert got is None, (row, got)
            continue
        assert got is not None, (row, "not in the report")
        assert got["outcome"] == expected[0], (row, got)
        assert got["reason"].startswith(expected[1]), (row, got["reason"])
    # The batches' counts agree with the report.
    assert counts["succeeded"] == ROWS - len(listed)
    # No invocation ran past its function's Timeout (on the virtual clock).
    timeouts = function_timeouts()
    over = {
        name: max(spent)
        for name, spent in run.execution.invocation_seconds.items()
        if max(spent) > timeouts[name]
    }
    assert (over != {}) == scenario.over_time_allowed, over
    if scenario.status == "FAILED":
        assert local_run.exit_code({"status": run.job["status"]}) == 2
        assert "authentication" in run.job["reason"] and "HTTP 401" in run.job["reason"]
        assert [m["Subject"] for m in pipeline.messages()] == [
            f"target-profile-sync: job {run.job['jobId']} FAILED"
        ]
    if scenario.name.startswith("value with"):
        meant = scenario.name.split("'")[1]
        for i in range(1, ROWS + 1):
            assert pipeline.emulator.store.get(CLIENT, "thirdPartyId", visitor_id(i))["tier"] == f"a{meant}b"
        assert pipeline.emulator.store.count(CLIENT) == ROWS  # no profile the value named

    if scenario.name.startswith("500s"):
        assert any(r["status"] == 500 for r in pipeline.emulator.requests)  # the fault did happen
    calls = {
        k: v for k, v in pipeline.emulator.calls.items() if k in ("batchUpdate", "batchStatus", "update")
    }
    MATRIX.append(
        {
            "name": scenario.name,
            "counts": counts,
            "calls": ", ".join(f"{k} {v}" for k, v in sorted(calls.items())),
            "transitions": run.execution.transitions.get("total"),
            "status": run.job["status"],
        }
    )


# ------------------------------------------------------------------------------------- item 7
def test_a_ten_minute_503_storm_is_waited_out_by_the_workflow_not_inside_a_lambda(pipeline, monkeypatch):
    """Target answers 503 to everything for 10 minutes (virtual), then recovers; default client
    settings. No invocation runs past its Timeout, and the job completes."""
    pipeline.monkeypatch.delenv("HTTP_MAX_ATTEMPTS")
    pipeline.setting(batch_max_rows=BATCH_ROWS)
    storm_ends = pipeline.clock.now() + 600
    emulator = pipeline.emulator
    next_fault = type(emulator)._next_fault

    def storm(self, endpoint, cfg):
        if endpoint in ("batchUpdate", "batchStatus") and pipeline.clock.now() < storm_ends:
            return "503"
        return next_fault(self, endpoint, cfg)

    monkeypatch.setattr(type(emulator), "_next_fault", storm)

    run = pipeline.run(visitors(ROWS))

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE", run.batches
    assert assert_accounted(pipeline, run)["succeeded"] == ROWS
    assert sorted(emulator.received_batches().values()) == [1, 1, 1]
    timeouts = function_timeouts()
    longest = {name: max(spent) for name, spent in run.execution.invocation_seconds.items()}
    assert all(longest[name] <= timeouts[name] for name in longest), longest
    assert not run.execution.timed_out
    throttled = sum(1 for r in emulator.requests if r["status"] == 503)
    assert throttled > 0 and pipeline.clock.elapsed >= 600
    print(
        f"\n503 storm of 600 s: {throttled} answers 503, job {run.job['status']} after "
        f"{run.execution.simulated_seconds:.0f} s; longest invocation per function (s, virtual): "
        f"{ {k: round(v) for k, v in longest.items()} }; SubmitBatch invocations "
        f"{run.execution.invocations.get('SubmitBatch')}"
    )


# ------------------------------------------------------------------------------------- issue 11 item 2
CALLER_HEADER = "x-local-lambda-function"


def _throttle(monkeypatch, function: str, service: str, times: int) -> list[int]:
    """Make `function`'s calls to DynamoDB or S3 fail as AWS fails them when throttled, `times`
    times (-1: always): moto answers with the real error code, and botocore retries it first."""
    hits = [0]
    # The handlers reach moto over HTTP: each request names the function that made it (a header
    # the in-process moto server sees), so only that step's calls fail.
    send = Endpoint._send

    def named_send(self, request):
        if running_function():
            request.headers[CALLER_HEADER] = running_function()
        return send(self, request)

    monkeypatch.setattr(Endpoint, "_send", named_send)

    def caller() -> str | None:
        return served.headers.get(CALLER_HEADER) if has_request_context() else running_function()

    def failing(original, error):
        def call(*args, **kwargs):
            if caller() == function and (times < 0 or hits[0] < times):
                hits[0] += 1
                raise error()
            return original(*args, **kwargs)

        return call

    if service == "dynamodb":

        def error():
            return DynamodbException(
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded.",
            )

        for name in ("update_item", "put_item", "get_item"):
            monkeypatch.setattr(DynamoDBBackend, name, failing(getattr(DynamoDBBackend, name), error))
    else:

        def error():
            return S3ClientError("SlowDown", "Please reduce your request rate.")

        for name in ("get_object", "put_object"):
            monkeypatch.setattr(S3Backend, name, failing(getattr(S3Backend, name), error))
    return hits


# (function, its AWS service, the API); botocore's own retries are off (AWS_MAX_ATTEMPTS=1, they
# sleep in real time): each throttled call reaches the handler, as when botocore's retries ran out.
STEPS = [
    ("ReserveQuota", "dynamodb", "v2"),
    ("SubmitBatch", "s3", "v2"),
    ("PollBatch", "dynamodb", "v2"),
    ("SingleUpdate", "s3", "single"),
    ("Finalize", "s3", "v2"),
]


@pytest.mark.parametrize(("function", "service", "api"), STEPS, ids=[s[0] for s in STEPS])
@pytest.mark.parametrize("for_good", [False, True], ids=["for a while", "for good"])
def test_aws_throttling_at_each_step_ends_in_an_account(pipeline, function, service, api, for_good):
    pipeline.setting(batch_max_rows=BATCH_ROWS, max_concurrency=1, aws_max_attempts=1)
    folders = "api=single/" if api == "single" else ""
    if api == "single":
        for i in range(1, ROWS + 1):
            pipeline.emulator.store.put(CLIENT, "thirdPartyId", visitor_id(i), {"tier": "old"})
    job = pipeline.job(pipeline.ingest(visitors(ROWS), folders=folders)["jobId"])

    with pytest.MonkeyPatch.context() as patch:
        hits = _throttle(patch, function, service, -1 if for_good else 3)
        run = run_job(pipeline, job)

    assert hits[0] > 0
    taken = pipeline.emulator.received_batches()
    assert all(n == 1 for n in taken.values()), taken
    print(f"\n{function} throttled {'for good' if for_good else 'for a while'}: {hits[0]} AWS errors")
    if not for_good:
        # Retried by name (TransientAwsError) with back-off: nothing lost, the job completes.
        assert run.execution.status == "SUCCEEDED", run.execution.describe()
        assert run.job["status"] == "COMPLETE", (run.job, run.batches)
        assert assert_accounted(pipeline, run)["succeeded"] == ROWS
        return
    counts = assert_accounted(pipeline, run)  # a report, with an account that holds, in every case
    if function == "Finalize":
        # Finalize can't write: the job ends FAILED with why, its report written by the last resort.
        assert run.execution.status == "FAILED", run.execution.describe()
        assert run.job["status"] == "FAILED"
        assert "TransientAwsError" in run.job["reason"] and "SlowDown" in run.job["reason"]
        assert counts["succeeded"] == ROWS
        assert [m["Subject"] for m in pipeline.messages()] == [
            f"target-profile-sync: job {run.job['jobId']} FAILED"
        ]
        return
    # The batches' steps fail for good: each is recorded pending with the reason, on its own.
    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE_WITH_ERRORS", run.job
    assert counts["pending"] == ROWS
    rows = pipeline.report_rows(run.job)
    assert len(rows) == ROWS and {r["outcome"] for r in rows} == {"pending"}
    assert all("TransientAwsError" in r["reason"] for r in rows), rows[0]
    assert all(b["counts"] and b.get("reason") for b in run.batches)
