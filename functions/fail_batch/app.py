"""Record a batch that could not be submitted after every retry: its rows failed."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import steps
from profile_sync.aws.ports import ports_from_env
from profile_sync.telemetry import add_row_counts

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path="jobId", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    logger.append_keys(batch=event["batch"]["batchIndex"])
    result = steps.fail_batch(ports_from_env(), event)
    add_row_counts(metrics, result["counts"])
    logger.warning("batch failed", extra={"error": (event.get("error") or {}).get("Error")})
    return result
