"""Ask Target for a submitted batch's status; ends the batch when it is over."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
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
    poll = steps.poll_batch(ports_from_env(), event)
    metrics.add_metric(name="StatusPolls", unit=MetricUnit.Count, value=1)
    if poll["done"]:
        metrics.add_metric(name="BatchesEnded", unit=MetricUnit.Count, value=1)
        add_row_counts(metrics, poll["counts"])
        logger.info("batch ended", extra={"end": poll["end"], "polls": poll["polls"], **poll["counts"]})
    else:
        logger.info(
            "batch still processing", extra={"polls": poll["polls"], "next_delay": poll["delaySeconds"]}
        )
    return poll
