"""Steps that failed for good: a batch's (its end recorded without Target's answer) or the job's
(it ends FAILED, with its report when the rows can be accounted, and a person is told)."""

from __future__ import annotations

from profile_sync.model import (
    BatchDone,
    BatchEnd,
    BatchItem,
    BatchRecord,
    JobRecord,
    JobResult,
    JobStatus,
    StepError,
)
from profile_sync.outcomes import MAYBE_ACCEPTED_REASON
from profile_sync.workflow import report
from profile_sync.workflow.batch_end import RecordPorts, end_single_rest, record_batch_end
from profile_sync.workflow.bulk import recorded_end
from profile_sync.workflow.common import auth_reason, error_reason, iso, short
from profile_sync.workflow.report import ReportPorts


def fail_batch(ports: RecordPorts, item: BatchItem) -> BatchDone:
    """A step of the batch failed for good (after its retries): record the batch's end.

    Only a refusal before acceptance fails the rows: Target answered the upload's every try and
    never took it (`stage` "submit", a TargetRetryLater). A batch whose upload may have reached
    Target (the "submitting" marker is still set), whose status can't be read (`stage` "status")
    or whose step failed otherwise (AWS errors, a bug) has pending rows, with the reason.
    """
    error: StepError = item.get("error") or {}
    error_type = error.get("Error", "error")
    record = ports.jobs.get_batch(item["jobId"], item["batch"]["batchIndex"]) or BatchRecord()
    if item.get("apiVersion") == "single":  # the chunks answered so far keep their answers
        reason = f"the update's outcome is unknown: a workflow step failed ({error_reason(error)})"
        if (record.get("cursor") or 0) >= item["batch"]["rows"]:
            return {"done": True, "end": BatchEnd.COMPLETE, "counts": record.get("counts") or {}}
        counts = end_single_rest(ports, item, record.get("cursor") or 0, reason)
        return {"done": True, "end": BatchEnd.STEP_FAILED, "counts": counts}
    ended = recorded_end(record)
    if ended is not None:  # the batch ended before its step failed
        return ended
    calls = record.get("submitCalls")
    end: BatchEnd
    if item.get("stage") == "status" or record.get("statusUrl"):
        end = BatchEnd.STATUS_FAILED
        reason = f"Target accepted the batch; its status could not be read ({error_reason(error)})"
    elif record.get("submitStartedAt"):
        end, reason = BatchEnd.MAYBE_ACCEPTED, f"{MAYBE_ACCEPTED_REASON} ({error_reason(error)})"
    elif item.get("stage", "submit") == "submit" and error_type == "TargetRetryLater":
        end = BatchEnd.SUBMIT_FAILED
        reason = (
            f"Target did not accept the batch: {calls} call(s) to batchUpdate, the last {_last(record)}"
            if calls
            else f"Target did not accept the batch ({error_reason(error)})"
        )
    else:
        end = BatchEnd.STEP_FAILED
        reason = f"the batch's outcome is unknown: a workflow step failed ({error_reason(error)})"
    counts = record_batch_end(ports, item, end, reason=reason, polls=(item.get("poll") or {}).get("polls"))
    return {"done": True, "end": end, "counts": counts}


def _last(record: BatchRecord) -> str:
    answer = str(record.get("lastAnswer") or "no answer").split(",", 1)[0]
    return "got no answer" if answer == "no answer" else f"answered {answer}"


def job_failed(ports: ReportPorts, job_id: str, error: StepError) -> JobResult:
    """A step failed for good: the job ends FAILED with its report (when the rows can be accounted)
    and a person is told why and which batches stopped."""
    reason = error_reason(error)
    unfinished = [
        f"{b['batchIndex']} ({b.get('status', 'PENDING')})"
        for b in sorted(ports.jobs.list_batches(job_id), key=lambda b: b["batchIndex"])
        if b.get("counts") is None
    ]
    if unfinished:
        reason += f"; batches that did not finish: {', '.join(unfinished)}"
    job = ports.jobs.get_job(job_id) or JobRecord(jobId=job_id)
    if job.get("authFailure"):
        reason = f"{auth_reason(job['authFailure'])}; then {reason}"
    try:
        # The report, with every row accounted (unfinished batches pending), whenever it can be built.
        return report.finalize_job(ports, job_id, failure=reason)
    except Exception as exc:  # the job must still end FAILED, with why
        reason += f"; no report: {type(exc).__name__}: {short(str(exc), 200)}"
    ports.jobs.update_job(
        job_id, {"status": JobStatus.FAILED, "reason": reason, "finishedAt": iso(ports.now())}
    )
    ports.notifier.notify(
        f"target-profile-sync: job {job_id} FAILED",
        f"Job {job_id} failed.\n"
        f"Source: s3://{job.get('sourceBucket')}/{job.get('sourceKey')}\n"
        f"Reason: {reason}\n"
        "Batches that finished keep their results; see profile-sync status for each batch.",
    )
    return {"jobId": job_id, "status": JobStatus.FAILED, "reason": reason}
