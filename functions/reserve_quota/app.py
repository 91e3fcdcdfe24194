"""Reserve a batch's rows in the client's daily quota; says how long to wait when it is spent."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import telemetry as m
from profile_sync.aws import ports
from profile_sync.aws.invocation import LambdaFunction
from profile_sync.model import BatchItem, QuotaResult
from profile_sync.workflow import quota

function = LambdaFunction()
logger, metrics = function.logger, function.metrics


@function.handler
def lambda_handler(event: BatchItem, context: LambdaContext) -> QuotaResult:
    result = quota.reserve_quota(ports.quota_ports(), event)
    if result["granted"]:
        m.count(metrics, m.QUOTA_ROWS_RESERVED, event["batch"]["rows"])
    else:
        m.count(metrics, m.QUOTA_DEFERRED)
    logger.info("quota decision", extra=dict(result))
    return result
