"""A workflow execution ended FAILED, TIMED_OUT or ABORTED (EventBridge): make sure a person knows.

The workflow's own Catch already marks failed jobs and notifies; this covers what it can't see:
an execution stopped by hand, timed out, or failing inside its last-resort step.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import steps
from profile_sync import telemetry as m
from profile_sync.aws.ports import ports_from_env
from profile_sync.model import JobStatus

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path="detail.name", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict:
    detail = event.detail
    job_id, status = detail["name"], detail["status"]  # the execution is named after its job
    ports = ports_from_env()
    job = ports.jobs.get_job(job_id)
    if job is None:
        logger.warning("execution of an unknown job", extra={"status": status})
        return {"jobId": job_id, "notified": False}
    if job.get("status") == JobStatus.FAILED:
        return {"jobId": job_id, "notified": False}  # the workflow's Catch has told a person already
    error = {"Error": f"Execution{status.title().replace('_', '')}", "Cause": detail.get("cause") or status}
    steps.job_failed(ports, job_id, error)
    m.count(metrics, m.JOBS_FAILED)
    logger.error("execution ended without a final job status", extra={"status": status})
    return {"jobId": job_id, "notified": True}
