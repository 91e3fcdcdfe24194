"""Shared fixtures: AWS in a moto server reached over HTTP, resources built from template.yaml,
handlers loaded from functions/."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from profile_sync_local.stack.aws_server import AwsServer, local_aws
from profile_sync_local.stack.functions import load_function
from profile_sync_local.stack.project import ROOT
from profile_sync_local.stack.resources import LocalResources

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


@pytest.fixture(scope="session")
def aws_server():
    """One moto server on loopback for the session; each test gets a fresh account (`aws`)."""
    with AwsServer() as server:
        yield server


@pytest.fixture
def aws(aws_server: AwsServer):
    """An empty AWS account over HTTP: every boto3 client reaches the moto server via AWS_ENDPOINT_URL,
    so botocore's real response path runs (streaming bodies, paginators, retries)."""
    with local_aws(aws_server):
        yield aws_server


@pytest.fixture
def stack(aws: AwsServer, monkeypatch: pytest.MonkeyPatch):
    """The stack's resources in moto (built from template.yaml), their names in the environment."""
    created = LocalResources().create()
    for name, value in created.env().items():
        monkeypatch.setenv(name, value)
    return created


def load_handler(function: str):
    """Import functions/<function>/app.py afresh (module state is per test, as per cold start)."""
    return load_function(function)


class AlertInbox:
    """An SQS queue subscribed to the alert topic: the SNS messages a person would get."""

    def __init__(self, topic_arn: str) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        self.queue_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        boto3.client("sns", region_name=REGION).subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=attributes["Attributes"]["QueueArn"]
        )

    def messages(self) -> list[dict]:
        """The messages that arrived since the last call."""
        sqs = boto3.client("sqs", region_name=REGION)
        found = []
        while batch := sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in batch:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return found


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
