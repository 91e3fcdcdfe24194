"""Shared fixtures: AWS in moto, resources built from template.yaml, handlers loaded from functions/."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from profile_sync_local.local_stack import ROOT, load_function, table_definition

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and local-only settings for every test: nothing reaches real AWS."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": "profile-sync",
        "POWERTOOLS_METRICS_NAMESPACE": "TargetProfileSync",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(autouse=True)
def _fresh_package_logger():
    """Each test starts with the domain package's logger as a new process has it.

    Handlers hand it their own JSON handler (and stop its propagation); without this, a handler
    imported by an earlier test would hide the Target client's lines from a later test's caplog.
    """
    yield
    package_logger = logging.getLogger("profile_sync")
    package_logger.handlers.clear()
    package_logger.propagate = True
    package_logger.setLevel(logging.NOTSET)


@dataclass
class Stack:
    """The stack's resources as created in moto, with their names."""

    bucket: str
    jobs_table: str
    idempotency_table: str
    state_machine_arn: str

    @property
    def s3(self):
        return boto3.client("s3", region_name=REGION)

    @property
    def sfn(self):
        return boto3.client("stepfunctions", region_name=REGION)

    def env(self) -> dict[str, str]:
        return {
            "DROP_BUCKET": self.bucket,
            "JOBS_TABLE": self.jobs_table,
            "IDEMPOTENCY_TABLE": self.idempotency_table,
            "STATE_MACHINE_ARN": self.state_machine_arn,
        }


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch):
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="profile-sync-drop")
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**table_definition("JobsTable", "profile-sync-jobs"))
        dynamodb.create_table(**table_definition("IdempotencyTable", "profile-sync-idempotency"))
        sfn = boto3.client("stepfunctions", region_name=REGION)
        definition = (ROOT / "statemachine" / "profile_sync.asl.json").read_text()
        arn = sfn.create_state_machine(
            name="profile-sync", definition=definition, roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        created = Stack("profile-sync-drop", "profile-sync-jobs", "profile-sync-idempotency", arn)
        for name, value in created.env().items():
            monkeypatch.setenv(name, value)
        yield created


def load_handler(function: str):
    """Import functions/<function>/app.py afresh (module state is per test, as per cold start)."""
    return load_function(function)


@dataclass
class FakeContext:
    """The parts of the Lambda context that Powertools reads."""

    function_name: str = "profile-sync-test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:profile-sync-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()


EVENTS = ROOT / "events"


def event_path(name: str) -> Path:
    return EVENTS / name
