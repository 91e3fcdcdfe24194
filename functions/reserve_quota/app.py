"""Reserve a batch's rows in the client's daily quota; says how long to wait when it is spent."""

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
    logger.append_keys(batch=event["batch"]["batchIndex"])
    with workflow_step(context):
        result = steps.reserve_quota(ports_from_env(), event)
    if result["granted"]:
        m.count(metrics, m.QUOTA_ROWS_RESERVED, event["batch"]["rows"])
    else:
        m.count(metrics, m.QUOTA_DEFERRED)
    logger.info("quota decision", extra=result)
    return result
