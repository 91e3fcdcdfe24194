"""The workflow's last resort: a step failed for good; the job gets FAILED and a person is told."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
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
        result = steps.job_failed(ports_from_env(), event["jobId"], event.get("error") or {})
    m.count(metrics, m.JOBS_FAILED)
    m.add_delta_update(metrics, result.get("delta"))
    logger.error("job failed", extra={"reason": result["reason"]})
    return result
