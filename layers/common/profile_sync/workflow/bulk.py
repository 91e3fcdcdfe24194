"""The bulk API: upload a batch file once, then poll its status until it ends.

Waits between polls are the state machine's (Wait states), never the Lambda's: each poll is one
status call that returns how long to wait (poll_schedule) or how the batch ended.
"""

from __future__ import annotations

from dataclasses import dataclass

from profile_sync import poll_schedule
from profile_sync.adobe_target.errors import (
    TargetAuthError,
    TargetMaybeAccepted,
    TargetRejected,
    TargetRetryLater,
)
from profile_sync.adobe_target.responses import BatchStatus as TargetBatchStatus
from profile_sync.model import (
    BatchDone,
    BatchEnd,
    BatchItem,
    BatchRecord,
    BatchStatus,
    PollState,
    TargetState,
)
from profile_sync.outcomes import MAYBE_ACCEPTED_REASON, end_of
from profile_sync.ports import TargetFor
from profile_sync.settings import Settings
from profile_sync.workflow.batch_end import RecordPorts, record_batch_end
from profile_sync.workflow.common import answer, endpoint, iso, job_stop, stop_job_for_auth, without_tries


@dataclass(frozen=True)
class BulkPorts(RecordPorts):
    """Submit and poll: the batch file and its record, and Target."""

    settings: Settings
    target: TargetFor


def submit_batch(ports: BulkPorts, item: BatchItem) -> PollState | BatchDone:
    """Upload the batch file once; returns the first poll state, or ends the batch.

    A "submitting" marker is written (conditionally) on the batch record before the POST. A
    re-entered step (the Lambda timed out or crashed after its POST and Step Functions retried)
    finds it and never POSTs again: Target may have accepted the batch. The marker is cleared
    only when Target's answer proves it did not (a refusal the client retries later).
    """
    job_id, batch = item["jobId"], item["batch"]
    index = batch["batchIndex"]
    stop = job_stop(ports.jobs, job_id)
    if stop:
        return _ended(ports, item, BatchEnd.NOT_SENT, reason=f"not sent to Target: the job stopped. {stop}")
    record = ports.jobs.get_batch(job_id, index) or BatchRecord()
    if record.get("submitStartedAt"):
        return _resume_submit(ports, item, record)
    client = ports.target(item["clientCode"])
    url = endpoint("POST", client.batch_url(item["apiVersion"]))
    calls = record.get("submitCalls") or 0
    with ports.objects.open(batch["key"]) as body:  # before the marker: an S3 error here sent nothing
        if not ports.jobs.update_batch(
            job_id,
            index,
            {"status": BatchStatus.SUBMITTING, "submitStartedAt": iso(ports.now())},
            expect={"submitStartedAt": ""},
        ):
            return _resume_submit(ports, item, ports.jobs.get_batch(job_id, index) or BatchRecord())
        try:
            result = client.submit_batch(body, version=item["apiVersion"])
        except TargetRetryLater as exc:
            # Target answered and did not take the batch (503, 5xx, a refused connection): another
            # try may POST it again.
            ports.jobs.update_batch(
                job_id,
                index,
                {
                    "status": BatchStatus.SUBMIT_RETRY,
                    "submitStartedAt": "",
                    "submitCalls": calls + exc.attempts,
                    "lastAnswer": answer(exc),
                },
            )
            raise
        except TargetMaybeAccepted as exc:
            calls += exc.attempts
            if exc.status_url:
                return _submitted(ports, item, exc.status_url, "", attempts=exc.attempts, calls=calls)
            return _ended(
                ports,
                item,
                BatchEnd.MAYBE_ACCEPTED,
                reason=f"{MAYBE_ACCEPTED_REASON} ({answer(exc)})",
                calls=calls,
            )
        except TargetAuthError as exc:
            reason = stop_job_for_auth(ports.jobs, ports.now, job_id, exc, url)
            return _ended(ports, item, BatchEnd.AUTH_FAILED, reason=reason, calls=calls + exc.attempts)
        except TargetRejected as exc:
            return _ended(
                ports,
                item,
                BatchEnd.SUBMIT_FAILED,
                reason=f"Target refused the batch: {without_tries(exc)}",
                calls=calls + exc.attempts,
            )
    return _submitted(
        ports,
        item,
        result.status_url,
        result.batch_id,
        attempts=result.attempts,
        calls=calls + result.attempts,
    )


def _submitted(
    ports: BulkPorts, item: BatchItem, status_url: str, batch_id: str, *, attempts: int, calls: int
) -> PollState:
    now = ports.now()
    ports.jobs.update_batch(
        item["jobId"],
        item["batch"]["batchIndex"],
        {
            "status": BatchStatus.SUBMITTED,
            "statusUrl": status_url,
            "targetBatchId": batch_id,
            "submittedAt": iso(now),
            "submitAttempts": attempts,
            "submitCalls": calls,
        },
    )
    return first_poll(ports.settings, status_url, now)


def first_poll(settings: Settings, status_url: str, now: float) -> PollState:
    return {
        "done": False,
        "statusUrl": status_url,
        "submittedAt": now,
        "deadlineAt": now + settings.poll_deadline_seconds,
        "polls": 0,
        "unknownStreak": 0,
        "delaySeconds": poll_schedule.first_delay(settings),
    }


def _resume_submit(ports: BulkPorts, item: BatchItem, record: BatchRecord) -> PollState | BatchDone:
    """An earlier try of this step began the POST and did not finish: never send the batch again."""
    ended = recorded_end(record)
    if ended is not None:  # that try ended the batch already
        return ended
    if record.get("statusUrl"):
        return first_poll(ports.settings, record["statusUrl"], ports.now())
    return _ended(ports, item, BatchEnd.MAYBE_ACCEPTED, calls=record.get("submitCalls"))


def recorded_end(record: BatchRecord) -> BatchDone | None:
    """The end a batch record holds already (an earlier try recorded it), or None."""
    end = BatchStatus(record.get("status") or BatchStatus.PENDING).end
    if end is None or record.get("counts") is None:
        return None
    return {"done": True, "end": end, "counts": record["counts"]}


def _ended(
    ports: BulkPorts, item: BatchItem, end: BatchEnd, *, reason: str = "", calls: int | None = None
) -> BatchDone:
    counts = record_batch_end(ports, item, end, reason=reason, calls=calls)
    return {"done": True, "end": end, "counts": counts}


def poll_batch(ports: BulkPorts, item: BatchItem) -> PollState:
    """One status call; ends the batch on complete, stuck, a vanished status or the deadline."""
    poll = PollState(**item["poll"])
    now = ports.now()
    job_id = item["jobId"]
    stop = job_stop(ports.jobs, job_id)
    if stop:
        return _end_poll(
            ports,
            item,
            poll,
            BatchEnd.STATUS_FAILED,
            reason=f"Target accepted the batch; its status was not followed: the job stopped. {stop}",
        )
    poll["polls"] += 1
    status: TargetBatchStatus | None
    retry_after = 0.0
    try:
        # The rows sent let an answer without a batch-level <status> or batchSize count as complete
        # when its counters cover them (responses._implied_state).
        status = ports.target(item["clientCode"]).batch_status(
            poll["statusUrl"], expected_rows=item["batch"]["rows"]
        )
    except TargetRetryLater as exc:
        status = None  # Target is busy: ask again later, it does not count as vanished
        retry_after = exc.retry_after_seconds
    except TargetAuthError as exc:
        reason = stop_job_for_auth(ports.jobs, ports.now, job_id, exc, endpoint("GET", poll["statusUrl"]))
        return _end_poll(
            ports, item, poll, BatchEnd.STATUS_FAILED, reason=f"Target accepted the batch; {reason}"
        )
    except TargetRejected as exc:
        return _end_poll(
            ports,
            item,
            poll,
            BatchEnd.STATUS_FAILED,
            reason=f"Target accepted the batch; its status could not be read: {without_tries(exc)}",
        )
    end = None
    if status is not None and status.state == TargetState.UNKNOWN:
        poll["unknownStreak"] += 1
        if poll["unknownStreak"] >= ports.settings.vanished_after_polls:
            end = BatchEnd.VANISHED
    elif status is not None:
        poll["unknownStreak"] = 0
        end = end_of(status)
    if end is None and now >= poll["deadlineAt"]:
        end = BatchEnd.DEADLINE
    if end is not None:
        return _end_poll(ports, item, poll, end, status=status)
    ports.jobs.update_batch(
        job_id, item["batch"]["batchIndex"], {"status": BatchStatus.POLLING, "polls": poll["polls"]}
    )
    # The wait grows with the time the batch has taken (poll_schedule: bounded lag and poll count);
    # at least what Target asked for when it was busy, never past the deadline.
    delay = poll_schedule.next_delay(
        ports.settings, submitted_at=poll.get("submittedAt", now), now=now, deadline_at=poll["deadlineAt"]
    )
    poll["delaySeconds"] = max(1, int(min(max(delay, retry_after), poll["deadlineAt"] - now)))
    return poll


def _end_poll(
    ports: BulkPorts,
    item: BatchItem,
    poll: PollState,
    end: BatchEnd,
    *,
    status: TargetBatchStatus | None = None,
    reason: str = "",
) -> PollState:
    counts = record_batch_end(ports, item, end, status=status, reason=reason, polls=poll["polls"])
    poll["done"], poll["end"], poll["counts"] = True, end, counts
    return poll
