"""A workflow execution ended FAILED, TIMED_OUT or ABORTED (EventBridge): make sure a person knows.

The workflow's own Catch already marks failed jobs and notifies; this covers what it can't see:
an execution stopped by hand, timed out, or failing inside its last-resort step.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import landing_step
from profile_sync import telemetry as m
from profile_sync.aws import ports
from profile_sync.aws.invocation import LambdaFunction
from profile_sync.model import JobStatus, StepError
from profile_sync.workflow import failure

# The execution is named after its job: its name is the correlation id.
function = LambdaFunction(correlation_id_path="detail.name", workflow_step=False)
logger, metrics = function.logger, function.metrics


@function.handler
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    detail = event.detail
    job_id, status = detail["name"], detail["status"]
    # No delta snapshot update here: an execution stopped from outside leaves it as it was (the
    # job's rows are sent again next time), so this function needs no snapshot grants.
    report_ports = ports.report_ports(delta=False)
    job = report_ports.jobs.get_job(job_id)
    if job is None:
        logger.warning("execution of an unknown job", extra={"status": status})
        return {"jobId": job_id, "notified": False}
    if job.get("status") == JobStatus.FAILED:
        return {"jobId": job_id, "notified": False}  # the workflow's Catch has told a person already
    if landing_step.execution_ended(report_ports.jobs, job, status):
        # Finalize had ended the job: only the landing check after it was cut short.
        logger.warning("execution ended during the landing check", extra={"status": status})
        return {"jobId": job_id, "notified": False}
    error: StepError = {
        "Error": f"Execution{status.title().replace('_', '')}",
        "Cause": detail.get("cause") or status,
    }
    failure.job_failed(report_ports, job_id, error)
    m.count(metrics, m.JOBS_FAILED)
    logger.error("execution ended without a final job status", extra={"status": status})
    return {"jobId": job_id, "notified": True}
