"""Step Functions as the ingest's workflow starter."""

from __future__ import annotations

import json

import boto3


class StepFunctionsWorkflow:
    def __init__(self, state_machine_arn: str, client=None) -> None:
        self.state_machine_arn = state_machine_arn
        self._sfn = client or boto3.client("stepfunctions")

    def start(self, name: str, payload: dict) -> str:
        """The job id is the execution name: a second start of the same job finds the first."""
        try:
            response = self._sfn.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(payload)
            )
            return response["executionArn"]
        except self._sfn.exceptions.ExecutionAlreadyExists:
            arn = self.state_machine_arn.replace(":stateMachine:", ":execution:")
            return f"{arn}:{name}"
