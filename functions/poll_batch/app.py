"""Ask Target for a submitted batch's status; ends the batch when it is over."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import steps
from profile_sync import telemetry as m
from profile_sync.aws.invocation import workflow_step
from profile_sync.aws.ports import ports_from_env, take_target_stats

logger = Logger()
tracer = Tracer()  # also traces the Target calls: Powertools patches requests
metrics = Metrics()
# The domain package's own lines (the Target client's retries, re-minting) as JSON with the job
# id, like the handler's: its loggers are children of "profile_sync".
copy_config_to_registered_loggers(source_logger=logger, include={"profile_sync"})


@logger.inject_lambda_context(correlation_id_path="jobId", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    logger.append_keys(batch=event["batch"]["batchIndex"])
    try:
        with workflow_step(context):
            poll = steps.poll_batch(ports_from_env(), event)
    finally:
        m.add_target_calls(metrics, take_target_stats())
    m.count(metrics, m.STATUS_POLLS)
    if poll["done"]:
        m.add_batch_end(metrics, poll["end"], poll["counts"])
        logger.info("batch ended", extra={"end": poll["end"], "polls": poll["polls"], **poll["counts"]})
    else:
        logger.info(
            "batch still processing", extra={"polls": poll["polls"], "next_delay": poll["delaySeconds"]}
        )
    return poll
