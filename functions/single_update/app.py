"""Send the next chunk of a batch through Target's single profile update API."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import steps
from profile_sync.aws.ports import ports_from_env

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path="jobId", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    logger.append_keys(batch=event["batch"]["batchIndex"])
    result = steps.single_update(ports_from_env(), event)
    metrics.add_metric(name="SingleUpdateChunks", unit=MetricUnit.Count, value=1)
    if result["waitSeconds"]:
        metrics.add_metric(name="QuotaDeferred", unit=MetricUnit.Count, value=1)
    logger.info("single-update chunk", extra=result)
    return result
