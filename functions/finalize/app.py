"""Add up every row of a job, write its report, set its final status and notify."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import steps
from profile_sync import telemetry as m
from profile_sync.aws.invocation import workflow_step
from profile_sync.aws.ports import ports_from_env

logger = Logger()
tracer = Tracer()  # also traces the Target calls: Powertools patches requests
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path="jobId", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    with workflow_step(context):
        result = steps.finalize_job(ports_from_env(), event["jobId"])
    if result["status"] == "COMPLETE":
        m.count(metrics, m.JOBS_COMPLETED)
    elif result["status"] == "FAILED":  # e.g. Target refused authentication: the report is written
        m.count(metrics, m.JOBS_FAILED)
    else:
        m.count(metrics, m.JOBS_WITH_ERRORS)
    m.add_delta_update(metrics, result.get("delta"))
    if result.get("durationSeconds") is not None:
        metrics.add_metric(name=m.JOB_DURATION, unit=MetricUnit.Seconds, value=result["durationSeconds"])
    logger.info("job finished", extra=result)
    return result
