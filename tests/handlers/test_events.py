"""Every file in events/ goes through its function's handler, so the events can't rot.

events/ is what `sam local invoke -e` uses: an EventBridge "Object Created" per drop, and for
each workflow Lambda the Payload its Task state builds (statemachine/profile_sync.asl.json).
A file maps to its function by name: `<function folder>_<what>.json` (functions/<folder>/).
Each runs with env.json's settings for its function (as `sam local invoke --env-vars env.json`
would apply them), against a moto server over HTTP with what it needs seeded, and the Target
emulator on loopback. The clock is fixed (STEP_TIME), so the events' times never go stale here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus, urlsplit

import boto3
import pytest

from profile_sync import clock as step_clock
from profile_sync.aws.jobs import DynamoJobStore
from profile_sync.ingest import Drop
from profile_sync_local.emulator import EmulatorConfig, TargetEmulator
from profile_sync_local.stack.aws_server import AwsServer
from profile_sync_local.stack.events import event_sources
from profile_sync_local.stack.functions import load_function
from profile_sync_local.stack.project import ROOT, state_machine_definition, template
from profile_sync_local.stack.resources import LocalResources
from tests.conftest import REGION, AlertInbox, FakeContext

EVENTS_DIR = ROOT / "events"
EVENT_FILES = sorted(EVENTS_DIR.glob("*.json"))
ENV_FILE = ROOT / "env.json"
SOURCES = event_sources()  # what was dropped under each ingest event's key
BULK_JOB_EVENT = "ingest_object_created.json"
SINGLE_JOB_EVENT = "ingest_object_created_single_api.json"
# The steps run on a fixed clock a little after the drop (09:15:02): quota day, deadlines, ids.
STEP_TIME = datetime(2026, 11, 28, 9, 15, 6, 412000, tzinfo=UTC).timestamp()


# ------------------------------------------------------------------------------------- template
def _functions() -> dict[str, str]:
    """Function folder -> logical id, for every AWS::Serverless::Function in template.yaml."""
    found = {}
    for logical_id, resource in template()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            folder = resource["Properties"]["CodeUri"].strip("/").removeprefix("functions/")
            found[folder] = logical_id
    return found


FUNCTIONS = _functions()


def _declared_variables(logical_id: str) -> set[str]:
    """The environment variables the template gives a function (sam local overrides only these)."""
    names = set(template()["Globals"]["Function"]["Environment"]["Variables"])
    own = template()["Resources"][logical_id]["Properties"].get("Environment", {})
    return names | set(own.get("Variables", {}))


def function_for(path: Path) -> str | None:
    """The function folder an event file belongs to: its name is `<folder>.json` or `<folder>_*.json`."""
    matches = [f for f in FUNCTIONS if path.stem == f or path.stem.startswith(f"{f}_")]
    return max(matches, key=len) if matches else None


def load_event(name: str) -> dict:
    return json.loads((EVENTS_DIR / name).read_text())


# ------------------------------------------------------------------------------------- the world
class StepClock:
    """The steps' time (profile_sync.clock): fixed, and a sleep moves it on instead of waiting."""

    def __init__(self, start: float) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0)


@dataclass
class World:
    stack: LocalResources
    emulator: TargetEmulator
    clock: StepClock
    monkeypatch: pytest.MonkeyPatch
    inbox: AlertInbox
    ingested: dict[str, dict] = field(default_factory=dict)

    @property
    def jobs(self) -> DynamoJobStore:
        return DynamoJobStore(self.stack.jobs_table)

    def invoke(self, folder: str, event: dict) -> dict:
        """Run functions/<folder>/app.py on the event with env.json's settings for its function."""
        logical_id = FUNCTIONS[folder]
        settings = json.loads(ENV_FILE.read_text())
        values = {**settings.get("Parameters", {}), **settings.get(logical_id, {})}
        declared = _declared_variables(logical_id)
        for name, value in values.items():
            if name in declared:  # what sam local does: the others never reach the function
                self.monkeypatch.setenv(name, value)
        # Resources that only exist in this moto run, and the emulator's port.
        self.monkeypatch.setenv("STATE_MACHINE_ARN", self.stack.state_machine_arn)
        self.monkeypatch.setenv("TARGET_BASE_URL", self.emulator.url)
        context = FakeContext(
            function_name=f"target-profile-sync-{folder}",
            invoked_function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:target-profile-sync-{folder}",
        )
        return load_function(folder).lambda_handler(event, context)

    def ingest(self, name: str) -> dict:
        """Drop the source of an ingest event into the bucket and run the ingest on the event."""
        if name in self.ingested:
            return self.ingested[name]
        event = load_event(name)
        key = unquote_plus(event["detail"]["object"]["key"])
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=event["detail"]["bucket"]["name"], Key=key, Body=SOURCES[name]
        )
        self.ingested[name] = self.invoke("ingest", event)
        return self.ingested[name]

    def read(self, key: str) -> bytes:
        s3 = boto3.client("s3", region_name=REGION)
        return s3.get_object(Bucket=self.stack.bucket, Key=key)["Body"].read()

    def read_json(self, key: str) -> object:
        return json.loads(self.read(key))

    def exists(self, key: str) -> bool:
        s3 = boto3.client("s3", region_name=REGION)
        return s3.list_objects_v2(Bucket=self.stack.bucket, Prefix=key)["KeyCount"] > 0

    def messages(self) -> list[dict]:
        return self.inbox.messages()

    def submit(self) -> dict:
        """The bulk job's batch submitted to the emulator, as SubmitBatch does it."""
        self.ingest(BULK_JOB_EVENT)
        return self.invoke("submit_batch", load_event("submit_batch_quota_granted.json"))

    def poll_event_for(self, submitted: dict) -> dict:
        """The poll event, following the status URL this emulator handed out."""
        event = load_event("poll_batch_first_poll.json")
        event["poll"]["statusUrl"] = submitted["statusUrl"]
        return event


@pytest.fixture
def world(aws: AwsServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    clock = StepClock(STEP_TIME)
    monkeypatch.setattr(step_clock, "time", clock.time)
    monkeypatch.setattr(step_clock, "sleep", clock.sleep)
    stack = LocalResources().create()
    inbox = AlertInbox(stack.topic_arn)
    with TargetEmulator(EmulatorConfig(seed=7), clock=clock.time) as emulator:
        yield World(stack, emulator, clock, monkeypatch, inbox)


# ------------------------------------------------------------------------------------- checks
# One per event file: seed what the handler needs, run it, and say what its result must be.
def check_ingest_sample(world: World, event: dict) -> None:
    result = world.ingest("ingest_object_created.json")
    assert result["status"] == "QUEUED"
    assert result["batchCount"] == 1
    job = world.jobs.get_job(result["jobId"])
    assert (job["received"], job["accepted"], job["rejected"], job["skipped"]) == (16, 10, 5, 1)
    assert job["sourceKey"] == event["detail"]["object"]["key"]


def check_ingest_odd_key(world: World, event: dict) -> None:
    result = world.ingest("ingest_object_created_gzip_odd_key.json")
    assert result["status"] == "QUEUED"
    job = world.jobs.get_job(result["jobId"])
    # The key arrives URL-encoded (spaces as '+', a real '+' as %2B, UTF-8 escaped).
    assert job["sourceKey"] == "incoming/acme/api=v1/mode=raw/CRM export + München 2026.csv.gz"
    assert (job["apiVersion"], job["inputMode"], job["accepted"]) == ("v1", "raw", 2)
    batch = world.read(f"jobs/{result['jobId']}/batches/batch-00001.txt").decode()
    assert batch == "batch=pcId,city,note\n1001,M%C3%BCnchen,VIP%20client\n1002,K%C3%B6ln,\n"


def check_ingest_single_api(world: World, event: dict) -> None:
    result = world.ingest("ingest_object_created_single_api.json")
    assert result["status"] == "QUEUED"
    job = world.jobs.get_job(result["jobId"])
    assert (job["apiVersion"], job["accepted"]) == ("single", 10)


def check_reserve_quota(world: World, event: dict) -> None:
    world.ingest(BULK_JOB_EVENT)
    result = world.invoke("reserve_quota", event)
    assert result == {
        "granted": True,
        "waitSeconds": 0,
        "used": 10,
        "limit": 1_000_000,
        "window": "2026-11-28",
    }
    # The state machine retries this task: the same batch never counts twice.
    assert world.invoke("reserve_quota", event)["used"] == 10
    # What the next state gets is exactly what the SubmitBatch event carries.
    assert load_event("submit_batch_quota_granted.json")["quota"] == {"result": result}


def check_submit_batch(world: World, event: dict) -> None:
    result = world.submit()
    assert result["done"] is False
    assert result["statusUrl"].startswith(f"{world.emulator.url}/m2/acme/v2/profile/batchStatus?batchId=")
    assert result["submittedAt"] == STEP_TIME
    assert result["deadlineAt"] - result["submittedAt"] == 86400
    assert (result["polls"], result["unknownStreak"], result["delaySeconds"]) == (0, 0, 60)
    batch_id = parse_qs(urlsplit(result["statusUrl"]).query)["batchId"][0]
    assert world.emulator.batch(batch_id)["rows"] == event["batch"]["rows"]
    record = world.jobs.get_batch(event["jobId"], 1)
    assert (record["status"], record["statusUrl"]) == ("SUBMITTED", result["statusUrl"])
    # The PollBatch event carries this result (Target's host and batch id aside).
    poll = load_event("poll_batch_first_poll.json")["poll"]
    assert poll.keys() == result.keys()
    assert {k: v for k, v in poll.items() if k != "statusUrl"} == {
        k: v for k, v in result.items() if k != "statusUrl"
    }
    ours, theirs = urlsplit(result["statusUrl"]), urlsplit(poll["statusUrl"])
    assert (ours.path, parse_qs(ours.query).keys()) == (theirs.path, parse_qs(theirs.query).keys())


def check_poll_batch(world: World, event: dict) -> None:
    submitted = world.submit()
    world.clock.sleep(event["poll"]["delaySeconds"])  # WaitBeforePoll
    result = world.invoke("poll_batch", world.poll_event_for(submitted))
    assert (result["done"], result["end"], result["polls"]) == (True, "complete", 1)
    assert result["counts"] == {"succeeded": 10, "failed": 0, "not_found": 0, "pending": 0}
    record = world.jobs.get_batch(event["jobId"], 1)
    assert record["status"] == "COMPLETE"
    assert record["counts"] == result["counts"]
    assert world.exists(record["resultsKey"])


def check_fail_batch(world: World, event: dict) -> None:
    world.ingest(BULK_JOB_EVENT)
    result = world.invoke("fail_batch", event)
    assert (result["done"], result["end"]) == (True, "submit_failed")
    assert result["counts"] == {"succeeded": 0, "failed": 10, "not_found": 0, "pending": 0}
    record = world.jobs.get_batch(event["jobId"], 1)
    assert record["status"] == "SUBMIT_FAILED"
    # The reason is read out of Lambda's error JSON in the Cause, not the JSON itself.
    assert record["reason"] == (
        "Target did not accept the batch "
        "(TargetRetryLater: batchUpdate: Target answered 503 to all 5 attempts | HTTP 503)"
    )
    assert "stackTrace" not in record["reason"]
    rows = list(csv.reader(io.StringIO(world.read(record["resultsKey"]).decode())))
    assert len(rows) == 10
    assert {row[2] for row in rows} == {"failed"}
    # Source line numbers, from the manifest's line runs: not 6 (skipped) nor 8-10, 12, 13 (rejected).
    assert [int(row[0]) for row in rows] == [2, 3, 4, 5, 7, 11, 14, 15, 16, 17]


def check_single_update(world: World, event: dict) -> None:
    world.ingest(SINGLE_JOB_EVENT)
    result = world.invoke("single_update", event)
    assert (result["cursor"], result["done"], result["waitSeconds"]) == (10, True, 0)
    assert world.emulator.calls["update"] == 10
    record = world.jobs.get_batch(event["jobId"], 1)
    assert record["status"] == "COMPLETE"
    assert record["counts"] == {"succeeded": 10, "failed": 0, "not_found": 0, "pending": 0}


def check_finalize(world: World, event: dict) -> None:
    submitted = world.submit()
    world.invoke("poll_batch", world.poll_event_for(submitted))
    result = world.invoke("finalize", event)
    expected = {
        "jobId": event["jobId"],
        "status": "COMPLETE_WITH_ERRORS",
        "received": 16,
        "rejected": 5,
        "skipped": 1,
        "succeeded": 10,
        "failed": 0,
        "not_found": 0,
        "pending": 0,
    }
    assert {name: result.get(name) for name in expected} == expected
    job = world.jobs.get_job(event["jobId"])
    assert job["status"] == "COMPLETE_WITH_ERRORS"
    assert world.read_json(job["reportKey"])["account"]["succeeded"] == 10
    rows = list(csv.DictReader(io.StringIO(world.read(job["reportRowsKey"]).decode())))
    assert [row["outcome"] for row in rows] == ["rejected"] * 5
    assert any("COMPLETE_WITH_ERRORS" in m["Subject"] for m in world.messages())


def check_landing_check(world: World, event: dict) -> None:
    """After finalize: the sample is drawn and stored, then one read verifies every profile."""
    submitted = world.submit()
    world.invoke("poll_batch", world.poll_event_for(submitted))
    world.invoke("finalize", {"jobId": event["jobId"]})
    first = world.invoke("landing_check", event)
    assert (first["done"], first["round"], first["waitSeconds"]) == (False, 1, 300)  # env.json's delay
    assert world.emulator.calls["profiles"] == 0  # updates take a while: no read before the wait
    assert world.exists(f"jobs/{event['jobId']}/landing/sample.json")
    second = world.invoke("landing_check", {"jobId": event["jobId"], "landing": first})
    # The sample's ten succeeded rows (nine ids: one is sent twice), each read once.
    assert second["done"] and second["result"]["verified"] == second["result"]["sampled"] == 9
    assert world.emulator.calls["profiles"] == 9
    job = world.jobs.get_job(event["jobId"])
    assert job["landingCheck"]["status"] == "DONE" and job["status"] == "COMPLETE_WITH_ERRORS"
    assert world.read_json(job["reportKey"])["landingCheck"]["verified"] == 9


def check_landing_check_failed(world: World, event: dict) -> None:
    world.ingest(BULK_JOB_EVENT)
    result = world.invoke("landing_check", event)
    assert result["done"]
    job = world.jobs.get_job(event["jobId"])
    assert job["landingCheck"]["status"] == "FAILED"
    assert job["landingCheck"]["reason"].startswith(
        "the check failed: TransientAwsError: GetObject: SlowDown"
    )
    assert job["status"] == "QUEUED"  # the check never changes the job's status


def check_job_failed(world: World, event: dict) -> None:
    world.ingest(BULK_JOB_EVENT)
    world.messages()  # not the ingest's
    result = world.invoke("job_failed", event)
    assert result["status"] == "FAILED"
    assert result["reason"].startswith(f"AccountingError: job {event['jobId']}: rows do not add up")
    assert "stackTrace" not in result["reason"]
    job = world.jobs.get_job(event["jobId"])
    assert (job["status"], job["reason"]) == ("FAILED", result["reason"])
    [message] = world.messages()
    assert message["Subject"] == f"target-profile-sync: job {event['jobId']} FAILED"
    assert "s3://profile-sync-drop/incoming/acme/visitors.csv" in message["Message"]


def check_execution_alert(world: World, event: dict) -> None:
    started = world.ingest(BULK_JOB_EVENT)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    # The execution EventBridge reports is the one the ingest started: its name and its input.
    assert event["detail"]["name"] == started["jobId"]
    assert json.loads(event["detail"]["input"]) == json.loads(
        sfn.describe_execution(executionArn=started["executionId"])["input"]
    )
    world.messages()  # not the ingest's
    result = world.invoke("execution_alert", event)
    assert result == {"jobId": started["jobId"], "notified": True}
    job = world.jobs.get_job(started["jobId"])
    assert (job["status"], job["reason"]) == (
        "FAILED",
        "ExecutionAborted: ABORTED; batches that did not finish: 1 (PENDING)",
    )
    [message] = world.messages()
    assert message["Subject"] == f"target-profile-sync: job {started['jobId']} FAILED"
    # Told once: a second delivery of the event finds the job FAILED already.
    assert world.invoke("execution_alert", event)["notified"] is False


CHECKS: dict[str, Callable[[World, dict], None]] = {
    "ingest_object_created.json": check_ingest_sample,
    "ingest_object_created_gzip_odd_key.json": check_ingest_odd_key,
    "ingest_object_created_single_api.json": check_ingest_single_api,
    "reserve_quota_batch.json": check_reserve_quota,
    "submit_batch_quota_granted.json": check_submit_batch,
    "poll_batch_first_poll.json": check_poll_batch,
    "fail_batch_submit_gave_up.json": check_fail_batch,
    "single_update_first_chunk.json": check_single_update,
    "finalize_job.json": check_finalize,
    "job_failed_accounting_error.json": check_job_failed,
    "landing_check_first_round.json": check_landing_check,
    "landing_check_failed_for_good.json": check_landing_check_failed,
    "execution_alert_execution_aborted.json": check_execution_alert,
}


# ------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.name)
def test_event_file_runs_through_its_function(path: Path, world: World) -> None:
    folder = function_for(path)
    assert folder, (
        f"events/{path.name} belongs to no function: name it <folder>_<what>.json ({sorted(FUNCTIONS)})"
    )
    check = CHECKS.get(path.name)
    assert check, f"events/{path.name} has no check in {Path(__file__).name}: add one to CHECKS"
    check(world, json.loads(path.read_text()))


def test_every_function_has_an_event_and_every_check_an_event_file() -> None:
    covered = {function_for(path) for path in EVENT_FILES}
    assert set(FUNCTIONS) - covered == set(), "functions without an event in events/"
    assert set(CHECKS) - {path.name for path in EVENT_FILES} == set(), "checks for event files that are gone"


def test_step_events_point_at_the_jobs_the_ingest_events_make() -> None:
    """One job id per drop, and each step event's keys are that job's (as ingest writes them)."""
    jobs = {}
    for path in EVENT_FILES:
        if function_for(path) == "ingest":
            event = json.loads(path.read_text())
            detail = event["detail"]
            drop = Drop(
                bucket=detail["bucket"]["name"],
                key=unquote_plus(detail["object"]["key"]),
                sequencer=detail["object"]["sequencer"],
                etag=detail["object"]["etag"],
                event_time=event["time"],
            )
            jobs[drop.job_id()] = path.name
    for path in EVENT_FILES:
        if function_for(path) == "ingest":
            continue
        event = json.loads(path.read_text())
        job_id = event.get("jobId") or event["detail"]["name"]  # EventBridge names the execution
        assert job_id in jobs, f"{path.name}: job {job_id} is made by no ingest event"
        prefix = f"jobs/{job_id}/"
        if "batch" in event:
            assert event["manifestKey"] == f"{prefix}manifest.json", path.name
            assert event["batch"]["jobId"] == job_id, path.name
            assert event["batch"]["key"] == f"{prefix}batches/batch-{event['batch']['batchIndex']:05d}.txt"
            assert event["clientCode"] == "acme", path.name
    assert {load_event(name)["jobId"] for name in ("single_update_first_chunk.json",)} == {
        job for job, name in jobs.items() if name == SINGLE_JOB_EVENT
    }


def test_step_events_carry_what_the_ingest_wrote(world: World) -> None:
    """The batch pointer in the step events is the item the Map reads from batches.json."""
    checked: dict[str, set[str]] = {}
    for ingest_event in (BULK_JOB_EVENT, SINGLE_JOB_EVENT):
        job = world.jobs.get_job(world.ingest(ingest_event)["jobId"])
        pointers = world.read_json(job["batchesKey"])
        started = {"apiVersion": job["apiVersion"], "manifestKey": job["manifestKey"], "clientCode": "acme"}
        checked[ingest_event] = set()
        for path in EVENT_FILES:
            event = json.loads(path.read_text())
            if function_for(path) == "ingest" or event.get("jobId") != job["jobId"] or "batch" not in event:
                continue
            assert event["batch"] in pointers, path.name
            assert {k: event[k] for k in started} == started, path.name
            checked[ingest_event].add(path.name)
    # Every assertion above sits behind a filter: every event that carries a batch was checked against
    # one of the two jobs (an event whose job id no ingest makes would otherwise be skipped), and the
    # events this test is about exist (an empty events/ would pass on nothing).
    carrying = {
        path.name
        for path in EVENT_FILES
        if function_for(path) != "ingest" and "batch" in json.loads(path.read_text())
    }
    assert carrying == checked[BULK_JOB_EVENT] | checked[SINGLE_JOB_EVENT], checked
    assert checked[BULK_JOB_EVENT] >= {
        "reserve_quota_batch.json",
        "submit_batch_quota_granted.json",
        "fail_batch_submit_gave_up.json",
        "poll_batch_first_poll.json",
    }, checked
    assert checked[SINGLE_JOB_EVENT] >= {"single_update_first_chunk.json"}, checked


def test_the_asl_task_payloads_have_the_shape_of_the_events() -> None:
    """Each workflow event has exactly the keys its Task's Parameters give the Lambda."""
    asl = json.loads(state_machine_definition())
    states = {**asl["States"], **asl["States"]["SendBatches"]["ItemProcessor"]["States"]}
    item = set(asl["States"]["SendBatches"]["ItemSelector"]) - {"batch.$"} | {"batch"}
    item = {k.removesuffix(".$") for k in item}

    def payload_keys(state: str) -> set[str]:
        parameters = states[state]["Parameters"]
        if "Payload" in parameters:
            return {k.removesuffix(".$") for k in parameters["Payload"]}
        assert parameters["Payload.$"] == "$"  # the whole state: the item plus what came before
        return set()

    # Payload.$ = "$": the item, plus each earlier task's ResultPath (and the Catch's error).
    expected = {
        "reserve_quota_batch.json": item,
        "submit_batch_quota_granted.json": item | {"quota"},
        "fail_batch_submit_gave_up.json": item | {"quota", "error"},
        "poll_batch_first_poll.json": payload_keys("PollStatus"),
        "single_update_first_chunk.json": payload_keys("SendSingleUpdates"),
        "finalize_job.json": payload_keys("Finalize"),
        "job_failed_accounting_error.json": payload_keys("JobFailed"),
        "landing_check_first_round.json": payload_keys("CheckLanding"),
        "landing_check_failed_for_good.json": payload_keys("RecordLandingCheckFailure"),
    }
    assert (
        payload_keys("ReserveQuota")
        == payload_keys("SubmitBatch")
        == payload_keys("RecordSubmitFailure")
        == set()
    )
    assert states["ReserveQuota"]["ResultPath"] == "$.quota"
    assert states["SubmitBatch"]["Catch"][0]["ResultPath"] == "$.error"
    for name, keys in expected.items():
        assert set(load_event(name)) == keys, name
    assert states["StartLandingCheck"]["Result"] == load_event("landing_check_first_round.json")["landing"]
    for name in (
        "fail_batch_submit_gave_up.json",
        "job_failed_accounting_error.json",
        "landing_check_failed_for_good.json",
    ):
        error = load_event(name)["error"]
        assert set(error) == {"Error", "Cause"}
        cause = json.loads(error["Cause"])  # Lambda's error JSON, as Step Functions passes it on
        assert cause["errorType"] == error["Error"]
        assert {"errorMessage", "stackTrace"} <= set(cause)


def test_env_json_sets_only_what_the_template_declares() -> None:
    """sam local drops, without a word, variables the template does not give the function."""
    settings = json.loads(ENV_FILE.read_text())
    assert set(settings) == {"Parameters", *FUNCTIONS.values()}
    everywhere = set.intersection(*(_declared_variables(logical_id) for logical_id in FUNCTIONS.values()))
    assert set(settings["Parameters"]) <= everywhere
    for logical_id in FUNCTIONS.values():
        assert set(settings[logical_id]) <= _declared_variables(logical_id), logical_id
        values = {**settings["Parameters"], **settings[logical_id]}
        # Resource names have no meaning locally unless env.json gives them: each one the function is given.
        assert {"JOBS_TABLE"} | ({"ALERT_TOPIC_ARN"} & _declared_variables(logical_id)) <= set(values), (
            logical_id
        )
        assert all(isinstance(v, str) for v in values.values()), logical_id
