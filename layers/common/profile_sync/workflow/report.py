"""The end of a job: every row accounted, the report written, the final status set, a person told."""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from profile_sync.delta.job import update_from_job
from profile_sync.delta.snapshot import PointerStore
from profile_sync.model import (
    BatchEnd,
    BatchItem,
    BatchRecord,
    JobKeys,
    JobRecord,
    JobResult,
    JobStatus,
    RowOutcome,
    pointer_of,
)
from profile_sync.outcomes import MAYBE_ACCEPTED_REASON, account, rows_csv
from profile_sync.ports import Notifier
from profile_sync.redrive import auto_redrive_pending
from profile_sync.settings import TARGET_ID_MAX_CHARS
from profile_sync.validate import spreadsheet_unsafe
from profile_sync.workflow.batch_end import RecordPorts, end_single_rest, record_batch_end, upload_lines
from profile_sync.workflow.common import auth_reason, iso, short


@dataclass(frozen=True)
class DeltaPorts:
    """Delta sync's snapshot update after a job: the snapshot pointers, and how many conditional
    writes to try against other jobs of the client (DELTA_MERGE_ATTEMPTS)."""

    pointers: PointerStore
    merge_attempts: int
    # DELTA_CLEANUP_GRACE_SECONDS: a replaced snapshot file is deleted by the first merge after this.
    cleanup_grace_seconds: int = 86400


@dataclass(frozen=True)
class ReportPorts(RecordPorts):
    """The job's files and records (batches left unrecorded are recorded now), and a person to tell;
    `delta`: the snapshot update of a delta sync job (None: this stack keeps no snapshots)."""

    notifier: Notifier
    delta: DeltaPorts | None = None
    # REDRIVE_PENDING_AUTO (finalize only): a job that ends with pending rows re-drives them once.
    redrive_pending_auto: bool = False


def finalize_job(ports: ReportPorts, job_id: str, failure: str | None = None) -> JobResult:
    """Add up every row, write the report, set the final status, tell a person when needed.

    Runs for every job, also one that failed (`failure`: the job_failed step's reason) or stopped
    on an authentication failure: those end FAILED, with the same report.
    """
    job = ports.jobs.get_job(job_id)
    if job is None:
        raise LookupError(f"job {job_id} not found")
    batches = settle_unfinished(ports, job)
    rows_account = account(job, batches)  # raises AccountingError: never a silent mismatch
    status = JobStatus.COMPLETE if rows_account.clean else JobStatus.COMPLETE_WITH_ERRORS
    if job.get("authFailure") and not failure:
        failure = auth_reason(job["authFailure"])
    if failure:
        status = JobStatus.FAILED
    keys = JobKeys(job_id)
    delta = _update_delta(ports, job, batches)
    upload_lines(ports.objects, keys.report_rows, _report_rows(ports, job), header=True)
    redrive = None
    if ports.redrive_pending_auto and not failure:
        ended = {**job, "status": status, **rows_account.to_dict()}
        redrive = auto_redrive_pending(ports.objects, ports.jobs, ended, batches)
    summary = {
        "jobId": job_id,
        "status": status,
        "source": {"bucket": job.get("sourceBucket"), "key": job.get("sourceKey")},
        "clientCode": job.get("clientCode"),
        "apiVersion": job.get("apiVersion"),
        "account": rows_account.to_dict(),
        "duplicateIds": job.get("duplicateIds", 0),
        "reasons": job.get("reasons", {}),
        # Rejected rows counted (in account and reasons) but not listed in rows.csv: REJECTS_MAX_ROWS.
        "rejectedNotListed": job.get("rejectedNotListed", 0),
        "warnings": job.get("warnings", []),
        **({"delta": delta} if delta is not None else {}),
        **({"autoRedrive": redrive} if redrive is not None else {}),
        "batches": [
            {
                "batchIndex": b["batchIndex"],
                "rows": b["rows"],
                "status": b.get("status"),
                "counts": b.get("counts"),
                "reason": b.get("reason"),
                "statusUrl": b.get("statusUrl"),
                "submittedAt": b.get("submittedAt"),
                "endedAt": b.get("endedAt"),
                "polls": b.get("polls"),
            }
            for b in batches
        ],
        "rowsReport": keys.report_rows,
        "finishedAt": iso(ports.now()),
        "reason": failure,
    }
    ports.objects.put_json(keys.report_summary, summary)
    ports.jobs.update_job(
        job_id,
        {
            "status": status,
            **rows_account.to_dict(),
            "reportKey": keys.report_summary,
            "reportRowsKey": keys.report_rows,
            "finishedAt": summary["finishedAt"],
            "reason": failure,
            **({"deltaUpdate": delta} if delta is not None else {}),
            **({"autoRedrive": redrive} if redrive is not None else {}),
        },
    )
    if status != JobStatus.COMPLETE:
        ports.notifier.notify(
            f"target-profile-sync: job {job_id} {status}",
            _account_message(job, status, rows_account.to_dict(), keys.report_summary, failure)
            + _redrive_message(job, redrive),
        )
    return cast(
        JobResult,
        {
            "jobId": job_id,
            "status": status,
            **({"reason": failure} if failure else {}),
            **rows_account.to_dict(),
            **({"delta": delta} if delta is not None else {}),
            **({"autoRedrive": redrive} if redrive is not None else {}),
            "durationSeconds": _seconds_since(job.get("createdAt"), ports.now()),
        },
    )


def _update_delta(ports: ReportPorts, job: JobRecord, batches: list[BatchRecord]) -> dict[str, Any] | None:
    """Delta sync: the rows Target confirmed go into the client's snapshot (profile_sync.delta).

    Never fails the job: a snapshot not updated only means these rows are sent again next time.
    """
    if not job.get("deltaKey") or ports.delta is None:
        return None
    try:
        return update_from_job(
            job=job,
            batches=list(batches),
            objects=ports.objects,
            pointers=ports.delta.pointers,
            now=iso(ports.now()),
            max_attempts=ports.delta.merge_attempts,
            grace_seconds=ports.delta.cleanup_grace_seconds,
        )
    except Exception as exc:
        return {
            "error": f"{type(exc).__name__}: {short(str(exc), 200)}",
            "skipped": "the snapshot was not updated: this job's rows are sent again next time",
        }


def settle_unfinished(ports: RecordPorts, job: JobRecord) -> list[BatchRecord]:
    """Batches whose steps ended without recording them are accounted as pending, with the reason.

    (A batch's steps failed for good and so did recording its end.) Returns the job's batches.
    """
    job_id = job["jobId"]
    batches = sorted(ports.jobs.list_batches(job_id), key=lambda b: b["batchIndex"])
    settled = False
    for record in batches:
        counts = record.get("counts")
        if counts is not None and sum(counts.values()) >= record["rows"]:
            continue
        item: BatchItem = {
            "jobId": job_id,
            "clientCode": job.get("clientCode", ""),
            "apiVersion": job.get("apiVersion", "v2"),
            "manifestKey": job.get("manifestKey") or JobKeys(job_id).manifest,
            "batch": pointer_of(record),
        }
        reason = (
            "the batch's outcome is unknown: its workflow steps ended without recording it "
            f"(last status {record.get('status', 'PENDING')})"
        )
        if record.get("statusUrl") or record.get("submitStartedAt"):
            reason = f"{MAYBE_ACCEPTED_REASON}; {reason}"
        if counts is not None:  # a single-update batch stopped part-way
            end_single_rest(ports, item, record.get("cursor", 0), reason)
        else:
            record_batch_end(ports, item, BatchEnd.STEP_FAILED, reason=reason)
        settled = True
    if settled:
        batches = sorted(ports.jobs.list_batches(job_id), key=lambda b: b["batchIndex"])
    return batches


def _seconds_since(stamp: str | None, now: float) -> int | None:
    """From the job's creation (the drop) to now; None when the record has no usable time."""
    try:
        return max(0, int(now - datetime.fromisoformat(stamp).timestamp())) if stamp else None
    except ValueError:
        return None


def _report_rows(ports: RecordPorts, job: JobRecord) -> Iterator[bytes]:
    """The rejected rows (from the rejects file), then each batch's non-success rows.

    Streamed: memory stays flat however many rows there are (upload_lines spools them to disk).
    """
    if job.get("rejectsKey"):
        with ports.objects.open(job["rejectsKey"]) as body, _any_field_size():
            text = io.TextIOWrapper(body, encoding="utf-8", errors="replace", newline="")
            rejected = (
                (
                    row["line"],
                    _rejected_id(row.get("original") or ""),
                    RowOutcome.REJECTED,
                    f"{row['reason']}: {spreadsheet_unsafe(row.get('detail') or '')}".rstrip(": "),
                )
                for row in csv.DictReader(text)
            )
            yield from rows_csv(rejected, "")
    for key in sorted(ports.objects.list_keys(JobKeys(job["jobId"]).results_prefix)):
        with ports.objects.open(key) as body:
            while chunk := body.read(1 << 20):
                yield chunk


def _rejected_id(original: str) -> str:
    # The id is the first field of the line as the rejects file keeps it (rows_csv guards it again).
    return spreadsheet_unsafe(original).split(",", 1)[0][:TARGET_ID_MAX_CHARS]


@contextlib.contextmanager
def _any_field_size() -> Iterator[None]:
    """Read rejects files of any age: before the cut copy, a rejected line of up to 1 MB was kept
    whole, past the csv module's 128 KB field limit."""
    previous = csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _redrive_message(job: JobRecord, redrive: dict[str, Any] | None) -> str:
    """What the automatic re-drive did, for the notice (REDRIVE_PENDING_AUTO)."""
    if not redrive:
        return ""
    if redrive.get("error"):
        return f"\nAutomatic re-drive of the pending rows failed ({redrive['error']}): {redrive['next']}."
    if not redrive.get("key"):
        return f"\nAutomatic re-drive: nothing to send ({redrive.get('note')})."
    rows = f"{redrive['rows']:,} pending rows " if redrive.get("rows") else "the pending rows "
    return (
        f"\nAutomatic re-drive: {rows}dropped as s3://{job.get('sourceBucket')}/{redrive['key']}; "
        f"a new job starts from it (profile-sync status {job['jobId']} lists it in redrivenBy)."
    )


def _account_message(
    job: JobRecord, status: str, rows: dict[str, int], summary_key: str, reason: str | None = None
) -> str:
    parts = ", ".join(f"{name} {value:,}" for name, value in rows.items())
    return (
        f"Job {job['jobId']} ended {status}.\n"
        + (f"Reason: {reason}\n" if reason else "")
        + f"Source: s3://{job.get('sourceBucket')}/{job.get('sourceKey')}\n"
        f"Rows: {parts}\n"
        f"Report: s3://{job.get('sourceBucket')}/{summary_key}\n"
        "Every row that is not a success, with its line number, is in report/rows.csv"
        + (
            f" (except {unlisted:,} rejected rows, counted by reason in summary.json)."
            if (unlisted := job.get("rejectedNotListed"))
            else "."
        )
    )
