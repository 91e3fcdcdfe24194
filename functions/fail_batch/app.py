"""Record a batch that could not be submitted after every retry: its rows failed."""

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
    result = steps.fail_batch(ports_from_env(), event)
    _count_rows(result["counts"])
    logger.warning("batch failed", extra={"error": (event.get("error") or {}).get("Error")})
    return result


def _count_rows(counts: dict) -> None:
    for name, metric in (
        ("succeeded", "RowsSucceeded"),
        ("failed", "RowsFailed"),
        ("not_found", "RowsNotFound"),
        ("pending", "RowsPending"),
    ):
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=counts.get(name, 0))
