"""sfn_local: real ASL on moto's Step Functions interpreter, handlers in-process, virtual time.

Tests without the `aws` fixture use sfn_local on its own, which then starts moto in-process
(mock_aws): that is the library's fallback and is kept covered; those with it run over the moto
server, as the pipeline does."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import boto3
import pytest

from profile_sync_local.sfn_local.clock import VirtualClock
from profile_sync_local.sfn_local.lambda_router import function_arn
from profile_sync_local.sfn_local.runner import LocalStateMachine, run_state_machine, substitute

ASL = Path(__file__).parent / "asl"
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class TransientError(Exception):
    pass


class FatalError(Exception):
    pass


def arns(*names: str) -> dict[str, str]:
    return {f"{n}FunctionArn": function_arn(n) for n in names}


def test_substitute_requires_every_placeholder():
    assert substitute('{"a": "${X}"}', {"X": "1"}) == '{"a": "1"}'
    with pytest.raises(KeyError, match="Y"):
        substitute('{"a": "${X}${Y}"}', {"X": "1"})


def test_lambda_chain_with_payload_selectors_and_context():
    seen = {}

    def add(event, context):
        seen["context"] = context
        return {"v": event["v"] + 1}

    result = run_state_machine(
        ASL / "chain.asl.json",
        {"Add": add, "Double": lambda event, _ctx: {"v": event["v"] * 2}},
        {"v": 1},
        substitutions=arns("Add", "Double"),
    )
    assert result.status == "SUCCEEDED", result.describe()
    assert result.output == {"v": 4, "msg": "v=4"}
    assert result.invocations == {"Add": 1, "Double": 1}
    assert result.states_entered() == ["Add", "Double", "Shape"]
    assert result.state_transitions == 3
    ctx = seen["context"]
    assert ctx.function_name == "Add"
    assert ctx.invoked_function_arn == function_arn("Add")
    assert ctx.get_remaining_time_in_millis() > 0
    assert ctx.memory_limit_in_mb and ctx.aws_request_id


def test_retry_on_custom_error_then_success_uses_virtual_backoff():
    attempts = []

    def flaky(event, _ctx):
        attempts.append(event)
        if len(attempts) < 3:
            raise TransientError(f"attempt {len(attempts)}")
        return {"ok": True}

    clock = VirtualClock(start=START)
    result = run_state_machine(
        ASL / "retry_catch.asl.json",
        {"Flaky": flaky, "Record": lambda e, _c: {"recorded": e}},
        {"n": 1},
        substitutions=arns("Flaky", "Record"),
        clock=clock,
    )
    assert result.status == "SUCCEEDED", result.describe()
    assert result.output == {"ok": True}
    assert result.invocations == {"Flaky": 3}
    # Billed: the state entered once, each of its two retries once more.
    assert result.transitions == {"total": 3, "parent": 3, "child_executions": 0, "child_states": 0}
    # IntervalSeconds 10, BackoffRate 3: 10 s then 30 s, on the virtual clock only.
    assert clock.sleeps == [10.0, 30.0]
    assert result.simulated_seconds == pytest.approx(40.0)
    assert [e.error_type for e in result.handler_errors] == ["TransientError", "TransientError"]
    failed = result.events("LambdaFunctionFailed")
    assert failed[0]["lambdaFunctionFailedEventDetails"]["error"] == "TransientError"


def test_catch_routes_other_errors_to_recording_state():
    recorded = []

    def fatal(_event, _ctx):
        raise FatalError("row 7 is broken")

    def record(event, _ctx):
        recorded.append(event)
        return {"recorded": True}

    result = run_state_machine(
        ASL / "retry_catch.asl.json",
        {"Flaky": fatal, "Record": record},
        {"n": 1},
        substitutions=arns("Flaky", "Record"),
        clock=VirtualClock(start=START),
    )
    assert result.status == "SUCCEEDED", result.describe()
    assert result.invocations == {"Flaky": 1, "Record": 1}  # not retried: not a TransientError
    error = recorded[0]["error"]
    assert error["Error"] == "FatalError"
    assert json.loads(error["Cause"])["errorMessage"] == "row 7 is broken"


def test_uncaught_error_fails_execution_and_unknown_function_is_reported():
    result = run_state_machine(
        {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": function_arn("Nope"), "End": True}}},
        {},
    )
    assert result.status == "FAILED"
    assert result.error == "ResourceNotFoundException"
    assert "no handler" in result.cause


def test_long_waits_run_on_the_virtual_clock():
    clock = VirtualClock(start=START)
    stamps = []

    def stamp(_event, _ctx):
        stamps.append(clock.time())
        return clock.time()

    until = (START + dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = run_state_machine(
        ASL / "wait.asl.json",
        {"Stamp": stamp},
        {"extra": 120, "until": until},
        substitutions=arns("Stamp"),
        clock=clock,
    )
    assert result.status == "SUCCEEDED", result.describe()
    # Three hours of Wait states, slept on the virtual clock only (its sleeps below): no wall-time
    # bound here, the machine's load would decide it.
    start = START.timestamp()
    assert stamps == [start + 3600, start + 3 * 3600]
    assert clock.sleeps == [3600.0, 120.0, pytest.approx(3 * 3600 - 3720)]
    assert result.simulated_seconds == pytest.approx(3 * 3600)
    # History events are stamped with virtual time.
    last = result.history[-1]["timestamp"]
    assert last.timestamp() == pytest.approx(start + 3 * 3600, abs=1)


def test_map_polls_concurrently_with_max_concurrency_and_plausible_virtual_duration():
    clock = VirtualClock(start=START)
    lock = threading.Lock()
    polls: dict[int, int] = {}
    threads: set[str] = set()
    first_wave = threading.Barrier(3, timeout=5)  # passes only if 3 handlers run at the same time

    def submit(event, _ctx):
        with lock:
            threads.add(threading.current_thread().name)
        if event["index"] < 3:
            first_wave.wait()
        time.sleep(0.02)  # real work overlapping with other iterations
        return {"index": event["index"], "submitted_at": clock.time()}

    def poll(event, _ctx):
        with lock:
            polls[event["index"]] = polls.get(event["index"], 0) + 1
            count = polls[event["index"]]
        # Batch i needs i+1 polls, i.e. (i+1) * 600 s after its submission.
        return {**event, "done": count > event["index"], "polled_at": clock.time()}

    batches = [{"rows": n} for n in range(6)]
    result = run_state_machine(
        ASL / "map_poll.asl.json",
        {"Submit": submit, "Poll": poll},
        {"batches": batches, "job": "j1"},
        substitutions=arns("Submit", "Poll"),
        clock=clock,
    )
    assert result.status == "SUCCEEDED", result.describe()
    assert result.output["count"] == 6
    assert result.max_concurrency["Submit"] == 3  # MaxConcurrency honoured, really concurrent
    assert len(threads) >= 3
    assert result.invocations["Poll"] == sum(range(1, 7))
    # Three slots: batches 0..2 start at t=0; each later batch takes the first free slot.
    # Slot finish times: b0 600, b1 1200, b2 1800, b3 600+2400=3000, b4 1200+3000=4200,
    # b5 1800+3600=5400. A model that serialised the waits would report 21 x 600 = 12600 s.
    assert result.simulated_seconds == pytest.approx(5400, abs=1)
    assert clock.forced_advances == 0


def test_distributed_map_reads_items_from_s3(aws):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="items-bucket")
    s3.put_object(Bucket="items-bucket", Key="in/items.json", Body=json.dumps([{"n": i} for i in range(5)]))
    lock = threading.Lock()
    seen = []

    def process(event, _ctx):
        with lock:
            seen.append(event["row"]["n"])
        return {"n2": event["row"]["n"] * 2}

    result = run_state_machine(
        ASL / "distributed.asl.json",
        {"Process": process},
        {"bucket": "items-bucket", "key": "in/items.json"},
        substitutions=arns("Process"),
    )
    assert result.status == "SUCCEEDED", result.describe()
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert result.output == [{"n2": 2 * i} for i in range(5)]
    assert result.max_concurrency["Process"] <= 2
    assert result.events("MapRunStarted")
    # Billed: the Map state, one per child execution started, and each child's one state
    # (moto keeps no history of the children: the parent's history shows only the Map state).
    assert result.state_transitions == 1
    assert result.transitions == {"total": 11, "parent": 1, "child_executions": 5, "child_states": 5}


def test_child_workflow_with_start_execution_sync2():
    clock = VirtualClock(start=START)
    sm = LocalStateMachine(
        ASL / "parent_child.asl.json",
        {"Work": lambda event, _ctx: {"v": event["v"] * 10, "at": clock.time()}},
        substitutions={"ChildArn": "${ChildArn}"},  # filled below
        clock=clock,
        name="parent",
    )
    child_arn = sm.add_child("child", ASL / "child.asl.json", **arns("Work"))
    sm.definition = substitute(sm.definition, {"ChildArn": child_arn})
    result = sm.run({"v": 4})
    assert result.status == "SUCCEEDED", result.describe()
    assert result.output["child"]["childStatus"] == "SUCCEEDED"
    assert result.output["child"]["childOutput"] == {"v": 40, "at": START.timestamp() + 1800}
    assert result.simulated_seconds == pytest.approx(1800)

    # A second run starts another child (uuid names: no ExecutionAlreadyExists); a failing one is caught.
    failing = LocalStateMachine(
        ASL / "parent_child.asl.json",
        {"Work": lambda _e, _c: (_ for _ in ()).throw(FatalError("child broke"))},
        substitutions={"ChildArn": child_arn},
        clock=clock,
        name="parent",
    )
    failing.add_child("child", ASL / "child.asl.json", **arns("Work"))
    result = failing.run({"v": 1})
    assert result.status == "SUCCEEDED", result.describe()
    cause = json.loads(result.output["childError"]["Cause"])
    assert cause["Status"] == "FAILED"
    assert cause["Error"] == "FatalError"


def test_handlers_call_back_into_moto_during_the_execution(aws):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="work-bucket")
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName="jobs",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    topic_arn = boto3.client("sns", region_name="us-east-1").create_topic(Name="done")["TopicArn"]
    main_thread = threading.current_thread()
    handler_threads = []

    def writer(event, _ctx):
        handler_threads.append(threading.current_thread())
        client = boto3.client("s3", region_name="us-east-1")
        client.put_object(Bucket="work-bucket", Key=f"out/{event['jobId']}.json", Body=b"{}")
        boto3.client("dynamodb", region_name="us-east-1").put_item(
            TableName="jobs", Item={"pk": {"S": event["jobId"]}, "state": {"S": "WRITTEN"}}
        )
        return {"key": f"out/{event['jobId']}.json"}

    subs = {**arns("Writer"), "TableName": "jobs", "TopicArn": topic_arn}
    result = run_state_machine(
        ASL / "aws_services.asl.json", {"Writer": writer}, {"jobId": "j1"}, substitutions=subs
    )
    assert result.status == "SUCCEEDED", result.describe()
    assert handler_threads and handler_threads[0] is not main_thread
    assert result.output["count"] == {"runs": "1"}
    assert result.output["notified"]["messageId"]
    # The test sees what the handler and the integrations wrote.
    assert s3.get_object(Bucket="work-bucket", Key="out/j1.json")["Body"].read() == b"{}"
    item = ddb.get_item(TableName="jobs", Key={"pk": {"S": "j1"}})["Item"]
    assert item["state"] == {"S": "WRITTEN"}
    assert item["runs"] == {"N": "1"}
