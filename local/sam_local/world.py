"""The world the functions run in (a fresh account on the moto server, the emulator behind its relay)
and, for each file in events/, how to prepare it and what to check of the answer and the records."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3

from profile_sync.aws.jobs import DynamoJobStore
from profile_sync_local.emulator import EmulatorConfig, TargetEmulator
from profile_sync_local.sfn_local.lambda_router import LocalLambdaContext, function_arn
from profile_sync_local.stack.aws_server import REGION, AwsServer, local_aws
from profile_sync_local.stack.events import event_sources
from profile_sync_local.stack.functions import load_function
from profile_sync_local.stack.project import ROOT
from profile_sync_local.stack.resources import LocalResources
from sam_local.certificates import throwaway_tls
from sam_local.functions import env_file, function_env, function_for, functions
from sam_local.relay import tls_relay
from sam_local.sam import Answer, Invoker

EVENTS = ROOT / "events"
SOURCES = event_sources()  # what was dropped under each ingest event's key
BULK = "ingest_object_created.json"
SINGLE = "ingest_object_created_single_api.json"


@dataclass
class World:
    """One account on the moto server, the emulator behind its relay, and what was run so far."""

    server: AwsServer
    emulator: TargetEmulator
    target_url: str
    env: dict  # the env file's document
    ca_file: Path
    stack: LocalResources = field(default_factory=LocalResources)
    done: dict[str, Any] = field(default_factory=dict)

    def fresh(self) -> None:
        self.server.reset()
        self.stack = LocalResources().create()
        self.done = {}

    @property
    def jobs(self) -> DynamoJobStore:
        return DynamoJobStore(self.stack.jobs_table)

    def run_here(self, folder: str, event: dict) -> Any:
        """A step the event under test needs first, by the real handler in this process."""
        logical_id = functions()[folder]
        saved = dict(os.environ)
        os.environ.update(function_env(self.env, logical_id))
        os.environ["REQUESTS_CA_BUNDLE"] = str(self.ca_file)  # this process trusts the relay too
        try:
            context = LocalLambdaContext(
                function_name=logical_id, invoked_function_arn=function_arn(logical_id)
            )
            return load_function(folder).lambda_handler(event, context)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def drop(self, name: str) -> dict:
        """The source of an ingest event in the bucket (what the event describes)."""
        event = load_event(name)
        key = unquote_plus(event["detail"]["object"]["key"])
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=event["detail"]["bucket"]["name"], Key=key, Body=SOURCES[name]
        )
        return event

    def ingested(self, name: str) -> dict:
        if name not in self.done:
            self.done[name] = self.run_here("ingest", self.drop(name))
        return self.done[name]

    def submitted(self) -> dict:
        if "submit" not in self.done:
            self.ingested(BULK)
            self.done["submit"] = self.run_here("submit_batch", load_event("submit_batch_quota_granted.json"))
        return self.done["submit"]

    def poll_event(self) -> dict:
        """The poll event carrying the state the submit step just returned (times of this run)."""
        event = load_event("poll_batch_first_poll.json")
        event["poll"] = self.submitted()
        return event


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


# ------------------------------------------------------------------------------------- per event
# name -> (prepare: world -> the event to send, check: (world, event, answer) -> problems).
Check = Callable[[World, dict, object], list[str]]


def _expect(answer: object, **wanted: object) -> list[str]:
    if not isinstance(answer, dict):
        return [f"answer is not an object: {answer!r}"[:200]]
    return [f"{k}={answer.get(k)!r}, expected {v!r}" for k, v in wanted.items() if answer.get(k) != v]


def _job(world: World, answer: object) -> Mapping[str, Any]:
    found = world.jobs.get_job(answer["jobId"]) if isinstance(answer, dict) and "jobId" in answer else None
    return found or {}


def check_ingest(accepted: int, api: str) -> Check:
    def check(world: World, event: dict, answer: object) -> list[str]:
        problems = _expect(answer, status="QUEUED")
        job = _job(world, answer)
        if (job.get("accepted"), job.get("apiVersion")) != (accepted, api):
            problems.append(f"job record: accepted {job.get('accepted')} api {job.get('apiVersion')}")
        return problems

    return check


def _batch(world: World, event: dict) -> Mapping[str, Any]:
    return world.jobs.get_batch(event["jobId"], event["batch"]["batchIndex"]) or {}


def check_reserve(world: World, event: dict, answer: object) -> list[str]:
    return _expect(answer, granted=True, used=10, waitSeconds=0)


def check_submit(world: World, event: dict, answer: object) -> list[str]:
    problems = _expect(answer, done=False, polls=0)
    if isinstance(answer, dict) and not str(answer.get("statusUrl", "")).startswith(world.target_url):
        problems.append(f"statusUrl {answer.get('statusUrl')!r} is not the emulator's")
    if _batch(world, event).get("status") != "SUBMITTED":
        problems.append(f"batch record status {_batch(world, event).get('status')!r}, expected SUBMITTED")
    return problems


def check_ended(end: str, status: str, succeeded: int) -> Check:
    def check(world: World, event: dict, answer: object) -> list[str]:
        problems = _expect(answer, done=True, end=end)
        record = _batch(world, event)
        counts = record.get("counts") or {}
        if record.get("status") != status or counts.get("succeeded") != succeeded:
            problems.append(f"batch record {record.get('status')!r} counts {counts}")
        return problems

    return check


def check_single(world: World, event: dict, answer: object) -> list[str]:
    return _expect(answer, cursor=10, done=True) + (
        [] if _batch(world, event).get("status") == "COMPLETE" else ["batch record is not COMPLETE"]
    )


def check_final(status: str) -> Check:
    def check(world: World, event: dict, answer: object) -> list[str]:
        problems = _expect(answer, status=status)
        job = world.jobs.get_job(event["jobId"]) or {}
        if job.get("status") != status:
            problems.append(f"job record status {job.get('status')!r}, expected {status}")
        return problems

    return check


def check_alert(world: World, event: dict, answer: object) -> list[str]:
    problems = _expect(answer, notified=True)
    job = world.jobs.get_job(event["detail"]["name"]) or {}
    if job.get("status") != "FAILED":
        problems.append(f"job record status {job.get('status')!r}, expected FAILED")
    return problems


def _poll_done(world: World) -> dict:
    world.run_here("poll_batch", world.poll_event())
    return load_event("finalize_job.json")


def _finalized(world: World) -> dict:
    """The bulk job polled to its end and finalized: the landing check's first round comes next."""
    _poll_done(world)
    world.run_here("finalize", load_event("finalize_job.json"))
    return load_event("landing_check_first_round.json")


def check_landing(status: str, done: bool) -> Check:
    def check(world: World, event: dict, answer: object) -> list[str]:
        problems = _expect(answer, done=done)
        record = (world.jobs.get_job(event["jobId"]) or {}).get("landingCheck") or {}
        if record.get("status") != status:
            problems.append(f"job record landingCheck {record!r}, expected status {status}")
        return problems

    return check


STEPS: dict[str, tuple[Callable[[World], dict], Check]] = {
    "ingest_object_created.json": (lambda w: w.drop(BULK), check_ingest(10, "v2")),
    "ingest_object_created_gzip_odd_key.json": (
        lambda w: w.drop("ingest_object_created_gzip_odd_key.json"),
        check_ingest(2, "v1"),
    ),
    "ingest_object_created_single_api.json": (lambda w: w.drop(SINGLE), check_ingest(10, "single")),
    "reserve_quota_batch.json": (
        lambda w: w.ingested(BULK) and load_event("reserve_quota_batch.json"),
        check_reserve,
    ),
    "submit_batch_quota_granted.json": (
        lambda w: w.ingested(BULK) and load_event("submit_batch_quota_granted.json"),
        check_submit,
    ),
    "poll_batch_first_poll.json": (lambda w: w.poll_event(), check_ended("complete", "COMPLETE", 10)),
    "fail_batch_submit_gave_up.json": (
        lambda w: w.ingested(BULK) and load_event("fail_batch_submit_gave_up.json"),
        check_ended("submit_failed", "SUBMIT_FAILED", 0),
    ),
    "single_update_first_chunk.json": (
        lambda w: w.ingested(SINGLE) and load_event("single_update_first_chunk.json"),
        check_single,
    ),
    "finalize_job.json": (_poll_done, check_final("COMPLETE_WITH_ERRORS")),
    "job_failed_accounting_error.json": (
        lambda w: w.ingested(BULK) and load_event("job_failed_accounting_error.json"),
        check_final("FAILED"),
    ),
    # The sample is drawn and stored; the Wait comes before the first read.
    "landing_check_first_round.json": (_finalized, check_landing("WAITING", done=False)),
    "landing_check_failed_for_good.json": (
        lambda w: w.ingested(BULK) and load_event("landing_check_failed_for_good.json"),
        check_landing("FAILED", done=True),
    ),
    "execution_alert_execution_aborted.json": (
        lambda w: w.ingested(BULK) and load_event("execution_alert_execution_aborted.json"),
        check_alert,
    ),
}


@dataclass
class Result:
    function: str
    event: str
    answer: str
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def run_events(
    world: World, invoke: Invoker, names: list[str], show: Callable[[Result], None] = lambda r: None
) -> list[Result]:
    """Each event in a fresh account; one that can't be prepared or checked fails alone."""
    results = []
    for name in names:
        logical_id = functions()[function_for(name)]
        answer = Answer()
        try:
            world.fresh()
            prepare, check = STEPS[name]
            event = prepare(world)
            answer = invoke(logical_id, event)
            problems = [answer.error] if answer.error else check(world, event, answer.value)
        except Exception as exc:  # reported with the others, not a crash of the whole run
            problems = [f"sam-local itself failed: {type(exc).__name__}: {exc}"]
        results.append(Result(logical_id, name, json.dumps(answer.value)[:160], problems))
        show(results[-1])
    return results


@contextlib.contextmanager
def local_world(host: str) -> Iterator[World]:
    """moto and the emulator's relay on ``host``, the stack created, the env file's document made."""
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sam-local-")))
        server = stack.enter_context(AwsServer(host=host))
        stack.enter_context(local_aws(server))
        emulator = stack.enter_context(TargetEmulator(EmulatorConfig(seed=7)))
        ca, cert, key = throwaway_tls(host, directory)
        emulator_host, emulator_port = emulator.url.removeprefix("http://").rsplit(":", 1)
        target_url = stack.enter_context(tls_relay(host, (emulator_host, int(emulator_port)), cert, key))
        emulator.configure(status_url_base=target_url)
        created = LocalResources().create()
        document = env_file(
            {
                "AWS_ENDPOINT_URL": server.url,
                "TARGET_BASE_URL": target_url,
                "STATE_MACHINE_ARN": created.state_machine_arn,
                "ALERT_TOPIC_ARN": created.topic_arn,
            }
        )
        yield World(server, emulator, target_url, document, ca, created)


def line(result: Result) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    return "\n".join(
        [f"{verdict}  {result.function:<24} {result.event:<42} {result.answer}"]
        + [f"      - {problem}" for problem in result.problems]
    )


def report(results: list[Result]) -> str:
    lines = [line(result) for result in results]
    passed = sum(r.passed for r in results)
    lines.append(f"sam-local: {passed} of {len(results)} passed")
    return "\n".join(lines)
