"""Ask Target for a submitted batch's status; ends the batch when it is over."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import telemetry as m
from profile_sync.aws import ports
from profile_sync.aws.invocation import LambdaFunction
from profile_sync.model import BatchItem, PollState
from profile_sync.workflow import bulk

function = LambdaFunction(calls_target=True)
logger, metrics = function.logger, function.metrics


@function.handler
def lambda_handler(event: BatchItem, context: LambdaContext) -> PollState:
    poll = bulk.poll_batch(ports.bulk_ports(), event)
    m.count(metrics, m.STATUS_POLLS)
    if poll["done"]:
        m.add_batch_end(metrics, poll["end"], poll["counts"])
        logger.info("batch ended", extra={"end": poll["end"], "polls": poll["polls"], **poll["counts"]})
    else:
        logger.info(
            "batch still processing", extra={"polls": poll["polls"], "next_delay": poll["delaySeconds"]}
        )
    return poll
