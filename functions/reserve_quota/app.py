"""Reserve a batch's rows in the client's daily quota; says how long to wait when it is spent."""

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
    result = steps.reserve_quota(ports_from_env(), event)
    if result["granted"]:
        metrics.add_metric(name="QuotaRowsReserved", unit=MetricUnit.Count, value=event["batch"]["rows"])
    else:
        metrics.add_metric(name="QuotaDeferred", unit=MetricUnit.Count, value=1)
    logger.info("quota decision", extra=result)
    return result
