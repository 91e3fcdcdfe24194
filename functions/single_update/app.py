"""Send the next chunk of a batch through Target's single profile update API."""

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
            result = steps.single_update(ports_from_env(), event)
    finally:
        m.add_target_calls(metrics, take_target_stats())
    m.count(metrics, m.SINGLE_UPDATE_CHUNKS)
    if result["waitSeconds"]:
        m.count(metrics, m.QUOTA_DEFERRED)
    if result.get("counts"):
        m.add_row_counts(metrics, result["counts"])
    logger.info("single-update chunk", extra={k: v for k, v in result.items() if k != "counts"})
    return result
