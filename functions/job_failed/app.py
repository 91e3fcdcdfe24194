"""The workflow's last resort: a step failed for good; the job gets FAILED and a person is told."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import telemetry as m
from profile_sync.aws import ports
from profile_sync.aws.invocation import LambdaFunction
from profile_sync.model import JobResult, StepError
from profile_sync.workflow import failure

function = LambdaFunction()
logger, metrics = function.logger, function.metrics


@function.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> JobResult:
    error: StepError = event.get("error") or StepError()
    result = failure.job_failed(ports.report_ports(), event["jobId"], error)
    m.count(metrics, m.JOBS_FAILED)
    m.add_delta_update(metrics, result.get("delta"))
    logger.error("job failed", extra={"reason": result.get("reason")})
    return result
