"""Upload one batch file to Target's bulk profile update API."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import telemetry as m
from profile_sync.aws import ports
from profile_sync.aws.invocation import LambdaFunction
from profile_sync.model import BatchDone, BatchItem, PollState
from profile_sync.workflow import bulk

function = LambdaFunction(calls_target=True)
logger, metrics = function.logger, function.metrics


@function.handler
def lambda_handler(event: BatchItem, context: LambdaContext) -> PollState | BatchDone:
    poll = bulk.submit_batch(ports.bulk_ports(), event)
    m.count(metrics, m.BATCHES_SUBMITTED)
    if poll["done"]:
        m.add_batch_end(metrics, poll["end"], poll["counts"])
        logger.warning("batch ended at submit", extra={"end": poll["end"]})
    else:
        logger.info("batch submitted", extra={"rows": event["batch"]["rows"]})
    return poll
