"""Record a batch whose Target step gave up after every retry.

A submit that never went through: its rows failed. A status that could not be read: Target has
the rows, so they are pending, with the reason.
"""

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
        result = steps.fail_batch(ports_from_env(), event)
    m.add_batch_end(metrics, result["end"], result["counts"])
    logger.warning(
        "batch ended without Target's answer",
        extra={"end": result["end"], "error": (event.get("error") or {}).get("Error")},
    )
    return result
