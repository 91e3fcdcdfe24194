"""Send the next chunk of a batch through Target's single profile update API."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import telemetry as m
from profile_sync.aws import ports
from profile_sync.aws.invocation import LambdaFunction
from profile_sync.model import BatchItem, SingleState
from profile_sync.workflow import single

function = LambdaFunction(calls_target=True)
logger, metrics = function.logger, function.metrics


@function.handler
def lambda_handler(event: BatchItem, context: LambdaContext) -> SingleState:
    result = single.single_update(ports.single_ports(), event)
    m.count(metrics, m.SINGLE_UPDATE_CHUNKS)
    if result["waitSeconds"]:
        m.count(metrics, m.QUOTA_DEFERRED)
    if result.get("counts"):
        m.add_row_counts(metrics, result["counts"])
    logger.info("single-update chunk", extra={k: v for k, v in result.items() if k != "counts"})
    return result
