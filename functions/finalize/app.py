"""Add up every row of a job, write its report, set its final status and notify."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import telemetry as m
from profile_sync.aws import ports
from profile_sync.aws.invocation import LambdaFunction
from profile_sync.model import JobResult, JobStatus
from profile_sync.workflow import report

function = LambdaFunction()
logger, metrics = function.logger, function.metrics


@function.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> JobResult:
    result = report.finalize_job(ports.report_ports(redrive=True), event["jobId"])
    if result["status"] == JobStatus.COMPLETE:
        m.count(metrics, m.JOBS_COMPLETED)
    elif result["status"] == JobStatus.FAILED:  # e.g. Target refused authentication: the report is written
        m.count(metrics, m.JOBS_FAILED)
    else:
        m.count(metrics, m.JOBS_WITH_ERRORS)
    m.add_delta_update(metrics, result.get("delta"))
    duration = result.get("durationSeconds")
    if duration is not None:
        metrics.add_metric(name=m.JOB_DURATION, unit=MetricUnit.Seconds, value=duration)
    logger.info("job finished", extra=dict(result))
    return result
