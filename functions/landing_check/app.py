"""Read back a sample of a finished job's succeeded profiles from Target: one round per invocation."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import landing_step
from profile_sync import telemetry as m
from profile_sync.aws import ports
from profile_sync.aws.invocation import LambdaFunction

function = LambdaFunction(calls_target=True)
logger, metrics = function.logger, function.metrics


@function.handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("error") is not None:  # the Catch of the check's step
        state = landing_step.landing_check_failed(ports.landing_ports(), event["jobId"], event["error"])
    else:
        state = landing_step.check_landing(ports.landing_ports(), event["jobId"], event.get("landing"))
    result = state.get("result")
    if result is not None and result.get("sampled"):
        m.add_landing_check(metrics, result)
    # Counts only: the sample's ids and values stay in S3.
    logger.info("landing check", extra={"round": state["round"], "done": state["done"], **(result or {})})
    return state
