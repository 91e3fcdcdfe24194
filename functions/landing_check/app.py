"""Read back a sample of a finished job's succeeded profiles from Target: one round per invocation."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import landing_step
from profile_sync import telemetry as m
from profile_sync.aws.invocation import workflow_step
from profile_sync.aws.ports import ports_from_env, take_target_stats

logger = Logger()
tracer = Tracer()  # also traces the Target calls: Powertools patches requests
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"profile_sync"})


@logger.inject_lambda_context(correlation_id_path="jobId", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    try:
        with workflow_step(context):
            if event.get("error") is not None:  # the Catch of the check's step
                state = landing_step.landing_check_failed(ports_from_env(), event["jobId"], event["error"])
            else:
                state = landing_step.check_landing(ports_from_env(), event["jobId"], event.get("landing"))
    finally:
        m.add_target_calls(metrics, take_target_stats())
    result = state.get("result")
    if result is not None and result.get("sampled"):
        m.add_landing_check(metrics, result)
    # Counts only: the sample's ids and values stay in S3.
    logger.info("landing check", extra={"round": state["round"], "done": state["done"], **(result or {})})
    return state
