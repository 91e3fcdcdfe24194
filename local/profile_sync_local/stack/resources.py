"""The stack's resources (bucket, tables, topic, state machine, client profiles) in the local account."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import boto3

from profile_sync_local.sfn_local import LocalLambdaContext, function_arn
from profile_sync_local.stack import functions
from profile_sync_local.stack.aws_server import REGION
from profile_sync_local.stack.events import drop_event
from profile_sync_local.stack.project import table_definition


@dataclass
class LocalResources:
    bucket: str = "profile-sync-drop"
    jobs_table: str = "profile-sync-jobs"
    idempotency_table: str = "profile-sync-idempotency"
    topic_arn: str = ""
    state_machine_arn: str = ""
    # SSM path of the client profiles (profile_sync.client_profiles); none stored = stack defaults.
    profiles_path: str = "/profile-sync/clients"

    def create(self) -> LocalResources:
        """Create the resources in the account boto3 reaches (the local moto server)."""
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=self.bucket)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**table_definition("JobsTable", self.jobs_table))
        dynamodb.create_table(**table_definition("IdempotencyTable", self.idempotency_table))
        self.topic_arn = boto3.client("sns", region_name=REGION).create_topic(Name="profile-sync-alerts")[
            "TopicArn"
        ]
        # The ingest starts executions of this one; the workflow itself runs through run_workflow.
        self.state_machine_arn = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="profile-sync-ingest-target",
            definition=json.dumps({"StartAt": "Queued", "States": {"Queued": {"Type": "Pass", "End": True}}}),
            roleArn="arn:aws:iam::123456789012:role/profile-sync",
        )["stateMachineArn"]
        return self

    def drop(self, key: str, body: bytes, *, at: datetime, sequencer: str | None = None) -> dict:
        """Put a file in the drop bucket and hand its S3 event to the real ingest handler."""
        boto3.client("s3", region_name=REGION).put_object(Bucket=self.bucket, Key=key, Body=body)
        return self.deliver(key, at=at, sequencer=sequencer, size=len(body))

    def deliver(
        self, key: str, *, at: datetime, sequencer: str | None = None, size: int | None = None
    ) -> dict:
        """Hand the S3 event of an object already in the drop bucket (e.g. the automatic re-drive
        file Finalize put there) to the real ingest handler, as EventBridge does in the stack."""
        if size is None:
            size = boto3.client("s3", region_name=REGION).head_object(Bucket=self.bucket, Key=key)[
                "ContentLength"
            ]
        event = drop_event(self.bucket, key, size, at=at, sequencer=sequencer)
        context = LocalLambdaContext(
            function_name="profile-sync-ingest", invoked_function_arn=function_arn("profile-sync-ingest")
        )
        return functions.load_function("ingest").lambda_handler(event, context)

    def env(self) -> dict[str, str]:
        return {
            "DROP_BUCKET": self.bucket,
            "JOBS_TABLE": self.jobs_table,
            "IDEMPOTENCY_TABLE": self.idempotency_table,
            "STATE_MACHINE_ARN": self.state_machine_arn,
            "ALERT_TOPIC_ARN": self.topic_arn,
            "CLIENT_PROFILES_PATH": self.profiles_path,
        }

    def put_profile(self, client_code: str, document: dict | str) -> int:
        """Store a client profile as `profile-sync clients set` does; returns its SSM version."""
        text = document if isinstance(document, str) else json.dumps(document)
        answer = boto3.client("ssm", region_name=REGION).put_parameter(
            Name=f"{self.profiles_path}/{client_code}", Value=text, Type="String", Overwrite=True
        )
        return answer["Version"]
