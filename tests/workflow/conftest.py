"""The whole pipeline under test: ingest handler, the real ASL executed by moto with the real step
handlers, S3/DynamoDB/SNS in a moto server reached over HTTP, the Target emulator on loopback, all
on one virtual clock."""

from __future__ import annotations

import contextvars
import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import boto3
import pytest

from profile_sync.aws.jobs import DynamoJobStore
from profile_sync_local.emulator import EmulatorConfig, TargetEmulator
from profile_sync_local.sfn_local.clock import VirtualClock
from profile_sync_local.sfn_local.runner import ExecutionResult
from profile_sync_local.stack.aws_server import REGION, AwsServer
from profile_sync_local.stack.resources import LocalResources
from profile_sync_local.stack.workflow import run_workflow, steps_on
from tests.conftest import AlertInbox

START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
CLIENT = "acme"


@dataclass
class Run:
    job: dict
    execution: ExecutionResult | None
    batches: list[dict] = field(default_factory=list)


@dataclass
class Pipeline:
    stack: LocalResources
    emulator: TargetEmulator
    clock: VirtualClock
    monkeypatch: pytest.MonkeyPatch
    inbox: AlertInbox
    drops: int = 0

    def setting(self, **values: object) -> None:
        """Stack Parameters, as the functions see them (environment variables)."""
        for name, value in values.items():
            self.monkeypatch.setenv(name.upper(), str(value))

    def ingest(
        self, body: bytes, name: str = "visitors.csv", client: str = CLIENT, folders: str = ""
    ) -> dict:
        self.drops += 1
        at = datetime.fromtimestamp(self.clock.now(), UTC)
        return self.stack.drop(
            f"incoming/{client}/{folders}{name}", body, at=at, sequencer=f"{self.drops:018X}"
        )

    def execution_input(self, job: dict) -> dict:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        return json.loads(sfn.describe_execution(executionArn=job["executionId"])["input"])

    def run(self, body: bytes, **kwargs: str) -> Run:
        """Drop a file and run its job's workflow to the end."""
        job = self.ingest(body, **kwargs)
        execution = (
            run_workflow(self.execution_input(job), clock=self.clock) if job.get("executionId") else None
        )
        return Run(self.job(job["jobId"]), execution, self.batches(job["jobId"]))

    def job(self, job_id: str) -> dict:
        return DynamoJobStore(self.stack.jobs_table).get_job(job_id)

    def batches(self, job_id: str) -> list[dict]:
        return sorted(
            DynamoJobStore(self.stack.jobs_table).list_batches(job_id), key=lambda b: b["batchIndex"]
        )

    def read(self, key: str) -> bytes:
        return (
            boto3.client("s3", region_name=REGION)
            .get_object(Bucket=self.stack.bucket, Key=key)["Body"]
            .read()
        )

    def report_rows(self, job: dict) -> list[dict]:
        return list(csv.DictReader(io.StringIO(self.read(job["reportRowsKey"]).decode())))

    def summary(self, job: dict) -> dict:
        return json.loads(self.read(job["reportKey"]))

    def messages(self) -> list[dict]:
        return self.inbox.messages()


@pytest.fixture
def pipeline(aws: AwsServer, monkeypatch: pytest.MonkeyPatch):
    clock = VirtualClock(start=START)
    stack = LocalResources().create()
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    inbox = AlertInbox(stack.topic_arn)
    # steps_on: the ingest's job times follow the virtual clock too.
    with TargetEmulator(EmulatorConfig(seed=7), clock=clock.time) as emulator, steps_on(clock):
        monkeypatch.setenv("TARGET_BASE_URL", emulator.url)
        monkeypatch.setenv("HTTP_MAX_ATTEMPTS", "3")
        yield Pipeline(stack, emulator, clock, monkeypatch, inbox)


def pools_run_in_the_submitters_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work a function hands to a thread pool (boto3's multipart uploads, parallel single updates)
    is still that function's: the pool's threads run in the submitter's context."""
    submit = ThreadPoolExecutor.submit
    monkeypatch.setattr(
        ThreadPoolExecutor,
        "submit",
        lambda self, fn, /, *args, **kwargs: submit(
            self, contextvars.copy_context().run, fn, *args, **kwargs
        ),
    )
