"""Record a batch whose Target step gave up after every retry.

A submit that never went through: its rows failed. A status that could not be read: Target has
the rows, so they are pending, with the reason.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import telemetry as m
from profile_sync.aws import ports
from profile_sync.aws.invocation import LambdaFunction
from profile_sync.model import BatchDone, BatchItem
from profile_sync.workflow import failure

function = LambdaFunction()
logger, metrics = function.logger, function.metrics


@function.handler
def lambda_handler(event: BatchItem, context: LambdaContext) -> BatchDone:
    result = failure.fail_batch(ports.record_ports(), event)
    m.add_batch_end(metrics, result["end"], result["counts"])
    logger.warning(
        "batch ended without Target's answer",
        extra={"end": result["end"], "error": (event.get("error") or {}).get("Error")},
    )
    return result
