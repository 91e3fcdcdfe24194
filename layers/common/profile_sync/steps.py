"""The workflow's steps: what each Lambda task of the state machine does, over ports.

Each step takes the state it is given (pointers and small counters, never rows) and returns the
small state the next Choice needs. Steps that end a batch record its outcome themselves, because
only they hold Target's answer (failed ids can be far more than a state may carry).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote

from profile_sync import poll_schedule
from profile_sync.ingest import JobStatus, job_prefix
from profile_sync.outcomes import (
    END_COMPLETE,
    END_DEADLINE,
    END_STATUS_FAILED,
    END_SUBMIT_FAILED,
    END_VANISHED,
    FAILED,
    REPORT_COLUMNS,
    SUCCEEDED,
    LineRuns,
    account,
    batch_outcome,
    batch_rows,
    end_of,
    resolve_rows,
    rows_csv,
)
from profile_sync.quota import DailyRowQuota, QuotaDecision, RollingQuota, utc_day
from profile_sync.settings import Settings
from profile_sync.target.client import TargetClient
from profile_sync.target.errors import TargetError, TargetRejected, TargetRetryLater
from profile_sync.target.responses import UNKNOWN, BatchStatus
from profile_sync.validate import spreadsheet_unsafe


class Objects(Protocol):
    def open(self, key: str) -> BinaryIO: ...
    def upload_file(self, path: Path, key: str, content_type: str) -> None: ...
    def put_json(self, key: str, document: object) -> None: ...
    def get_json(self, key: str) -> object: ...
    def list_keys(self, prefix: str) -> list[str]: ...


class Jobs(Protocol):
    def get_job(self, job_id: str) -> dict | None: ...
    def update_job(self, job_id: str, changes: dict) -> None: ...
    def get_batch(self, job_id: str, index: int) -> dict | None: ...
    def update_batch(self, job_id: str, index: int, changes: dict, *, expect: dict | None = None) -> bool: ...
    def list_batches(self, job_id: str) -> list[dict]: ...


class Notifier(Protocol):
    def notify(self, subject: str, message: str) -> bool:
        """Best-effort: True once published; a failure is logged and counted, never raised."""


@dataclass
class Ports:
    settings: Settings
    objects: Objects
    jobs: Jobs
    target: Callable[[str], TargetClient]  # a client for a client code
    daily_quota: DailyRowQuota
    single_quota: RollingQuota
    notifier: Notifier
    now: Callable[[], float]


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------- quota
def reserve_quota(ports: Ports, item: dict) -> dict:
    """Reserve the batch's rows in the client's daily quota (idempotent per job and batch).

    The batch record remembers the day it was granted on, so a retry after midnight finds it
    instead of counting the rows again on the new day.
    """
    job_id, batch = item["jobId"], item["batch"]
    now = ports.now()
    # A client profile may set a quota where the stack has none (AccountQuota.per_client).
    if ports.settings.daily_row_quota or getattr(ports.daily_quota, "per_client", False):
        reserved_on = (ports.jobs.get_batch(job_id, batch["batchIndex"]) or {}).get("quotaReservedOn")
        if reserved_on and reserved_on != utc_day(now):
            # Granted on an earlier day by a try whose answer was lost: not counted again today.
            return QuotaDecision(True, 0, 0, ports.settings.daily_row_quota, reserved_on).to_dict()
    decision: QuotaDecision = ports.daily_quota.reserve(
        item["clientCode"], f"{job_id}#{batch['batchIndex']}", batch["rows"], now
    )
    if not decision.granted:
        _note_quota_wait(ports, item, decision)
    elif decision.limit:  # quota on: remember the day it was granted on
        ports.jobs.update_batch(job_id, batch["batchIndex"], {"quotaReservedOn": decision.window})
    return decision.to_dict()


def _note_quota_wait(ports: Ports, item: dict, decision: QuotaDecision) -> None:
    job_id, index = item["jobId"], item["batch"]["batchIndex"]
    ports.jobs.update_batch(
        job_id, index, {"status": "WAITING_FOR_QUOTA", "quotaWaitSeconds": decision.wait_seconds}
    )
    # One message per job, however many batches wait; marked sent once it was published.
    job = ports.jobs.get_job(job_id) or {}
    if not job.get("quotaWaitNotified") and ports.notifier.notify(
        f"target-profile-sync: job {job_id} waits for the daily quota",
        f"Job {job_id} ({job.get('sourceKey', '?')}) has used the client's daily quota "
        f"({decision.used:,} of {decision.limit:,} rows on {decision.window}). Its remaining "
        f"batches wait about {decision.wait_seconds // 3600} h for the next UTC day and then go on "
        "by themselves.",
    ):
        ports.jobs.update_job(job_id, {"quotaWaitNotified": True})


# ------------------------------------------------------------------------------------- bulk
def submit_batch(ports: Ports, item: dict) -> dict:
    """Upload the batch file; returns the first poll state. Refusals end the batch as failed."""
    job_id, batch = item["jobId"], item["batch"]
    client = ports.target(item["clientCode"])
    try:
        with ports.objects.open(batch["key"]) as body:
            result = client.submit_batch(body, version=item["apiVersion"])
    except TargetRejected as exc:
        counts = record_batch_end(ports, item, END_SUBMIT_FAILED, reason=f"Target refused the batch: {exc}")
        return {"done": True, "end": END_SUBMIT_FAILED, "counts": counts}
    now = ports.now()
    settings = ports.settings
    ports.jobs.update_batch(
        job_id,
        batch["batchIndex"],
        {
            "status": "SUBMITTED",
            "statusUrl": result.status_url,
            "targetBatchId": result.batch_id,
            "submittedAt": _iso(now),
            "submitAttempts": result.attempts,
        },
    )
    return {
        "done": False,
        "statusUrl": result.status_url,
        "submittedAt": now,
        "deadlineAt": now + settings.poll_deadline_seconds,
        "polls": 0,
        "unknownStreak": 0,
        "delaySeconds": poll_schedule.first_delay(settings),
    }


def error_reason(error: dict) -> str:
    """A Step Functions error (Error + Cause, the Cause being Lambda's error JSON) in one line."""
    cause = error.get("Cause", "")
    with contextlib.suppress(ValueError, AttributeError):
        cause = json.loads(cause).get("errorMessage", cause)
    return f"{error.get('Error', 'error')}: {_short(cause)}"


def fail_batch(ports: Ports, item: dict) -> dict:
    """A Target step gave up after its retries.

    The submit step (503 storm, 5xx, auth): the batch's rows failed. The status step (`stage`
    "status": auth that re-minting can't fix, a refusal): Target has the rows but we can't learn
    what became of them, so they are pending, and the batch keeps its status URL for a later look.
    """
    reason = error_reason(item.get("error") or {})
    if item.get("stage") == "status":
        end = END_STATUS_FAILED
        counts = record_batch_end(
            ports,
            item,
            end,
            reason=f"could not read the batch status ({reason})",
            polls=(item.get("poll") or {}).get("polls"),
        )
    else:
        end = END_SUBMIT_FAILED
        counts = record_batch_end(ports, item, end, reason=f"could not submit the batch ({reason})")
    return {"done": True, "end": end, "counts": counts}


def poll_batch(ports: Ports, item: dict) -> dict:
    """One status call; ends the batch on complete, stuck, a vanished status or the deadline."""
    poll = dict(item["poll"])
    poll["polls"] += 1
    now = ports.now()
    status: BatchStatus | None
    try:
        status = ports.target(item["clientCode"]).batch_status(poll["statusUrl"])
    except TargetRetryLater:
        status = None  # Target is busy: ask again later, it does not count as vanished
    end = None
    if status is not None and status.state == UNKNOWN:
        poll["unknownStreak"] += 1
        if poll["unknownStreak"] >= ports.settings.vanished_after_polls:
            end = END_VANISHED
    elif status is not None:
        poll["unknownStreak"] = 0
        end = end_of(status)
    if end is None and now >= poll["deadlineAt"]:
        end = END_DEADLINE
    if end is not None:
        poll.update(
            done=True, end=end, counts=record_batch_end(ports, item, end, status=status, polls=poll["polls"])
        )
        return poll
    ports.jobs.update_batch(
        item["jobId"], item["batch"]["batchIndex"], {"status": "POLLING", "polls": poll["polls"]}
    )
    # The wait grows with the time the batch has taken (poll_schedule: bounded lag and poll count).
    poll["delaySeconds"] = poll_schedule.next_delay(
        ports.settings, submitted_at=poll.get("submittedAt", now), now=now, deadline_at=poll["deadlineAt"]
    )
    return poll


def record_batch_end(
    ports: Ports,
    item: dict,
    end: str,
    *,
    status: BatchStatus | None = None,
    reason: str = "",
    polls: int | None = None,
) -> dict:
    """Write the batch's non-success rows (with source lines) to S3 and its counts to its record."""
    job_id, batch = item["jobId"], item["batch"]
    outcome = batch_outcome(end, status, reason)
    line_runs = _line_runs(ports, item)
    results_key = f"{job_prefix(job_id)}results/batch-{batch['batchIndex']:05d}.csv"
    with ports.objects.open(batch["key"]) as body:
        rows = resolve_rows(outcome, batch_rows(_lines(body)), line_runs)
        _upload_lines(ports, results_key, rows_csv(rows, batch["batchIndex"]))
    ports.jobs.update_batch(
        job_id,
        batch["batchIndex"],
        {
            "status": end.upper(),
            "counts": outcome.counts,
            "resultsKey": results_key,
            "endedAt": _iso(ports.now()),
            "reason": outcome.unnamed[1] if outcome.unnamed[0] != SUCCEEDED else None,
            "polls": polls,
            "targetState": status.state if status else None,
            "targetCounts": _target_counts(status),
        },
    )
    return outcome.counts


def _target_counts(status: BatchStatus | None) -> dict | None:
    if status is None:
        return None
    counts = {
        "batchSize": status.batch_size,
        "consumed": status.consumed,
        "successful": status.successful,
        "notFound": status.not_found,
        "failed": status.failed,
    }
    return {k: v for k, v in counts.items() if v is not None} or None


def _line_runs(ports: Ports, item: dict) -> LineRuns:
    manifest = ports.objects.get_json(item.get("manifestKey") or f"{job_prefix(item['jobId'])}manifest.json")
    index = item["batch"]["batchIndex"]
    entry = next(b for b in manifest["batches"] if b["batchIndex"] == index)
    return LineRuns([tuple(run) for run in entry["lineRuns"]])


def _lines(body: BinaryIO) -> Iterator[bytes]:
    """Lines of a streamed object, without holding it whole."""
    pending = b""
    while chunk := body.read(1 << 20):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def _upload_lines(ports: Ports, key: str, chunks: Iterable[bytes], header: bool = False) -> None:
    with tempfile.NamedTemporaryFile(suffix=".csv") as spool:
        if header:
            spool.write((",".join(REPORT_COLUMNS) + "\n").encode())
        for chunk in chunks:
            spool.write(chunk)
        spool.flush()
        ports.objects.upload_file(Path(spool.name), key, "text/csv; charset=utf-8")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------- single update
def single_update(ports: Ports, item: dict) -> dict:
    """Send the next chunk of a batch's rows through the single profile update API.

    Resumable by cursor: each call reserves the chunk in the rolling 24 h quota, sends it with
    bounded concurrency and records the chunk's answers; a retried call never counts twice.
    """
    job_id, batch = item["jobId"], item["batch"]
    state = dict(item.get("single") or {"cursor": 0})
    cursor = state["cursor"]
    rows = min(ports.settings.single_update_chunk_rows, batch["rows"] - cursor)
    if rows <= 0:
        return {"cursor": cursor, "done": True, "waitSeconds": 0}
    decision = ports.single_quota.reserve(
        item["clientCode"], f"{job_id}#{batch['batchIndex']}#{cursor}", rows, ports.now()
    )
    if not decision.granted:
        _note_quota_wait(ports, item, decision)
        return {"cursor": cursor, "done": False, "waitSeconds": decision.wait_seconds}

    with ports.objects.open(batch["key"]) as body:
        lines = _lines(body)
        header = next(lines).decode("utf-8").removeprefix("batch=").split(",")
        chunk = list(itertools.islice(lines, cursor, cursor + rows))
    client = ports.target(item["clientCode"])
    id_type, names = header[0], header[1:]

    def send(line: bytes) -> tuple[str, str]:
        fields = line.decode("utf-8").split(",")
        params = {name: value for name, value in zip(names, fields[1:], strict=False) if value}
        try:
            client.single_update(id_type, unquote(fields[0]), params, encoded=True)
            return SUCCEEDED, ""
        except TargetError as exc:
            return FAILED, _short(str(exc), 200)

    with ThreadPoolExecutor(max_workers=max(1, ports.settings.single_update_concurrency)) as pool:
        answers = list(pool.map(send, chunk))

    line_runs = _line_runs(ports, item)
    counts = {SUCCEEDED: 0, FAILED: 0}
    failures = []
    for offset, (line, (outcome, reason)) in enumerate(zip(chunk, answers, strict=True)):
        counts[outcome] += 1
        if outcome != SUCCEEDED:
            visitor_id = line.split(b",", 1)[0].decode("utf-8")
            failures.append((line_runs.line(cursor + offset), visitor_id, outcome, reason))
    next_cursor = cursor + rows
    key = f"{job_prefix(job_id)}results/batch-{batch['batchIndex']:05d}-{cursor:07d}.csv"
    _upload_lines(ports, key, rows_csv(failures, batch["batchIndex"]))
    done = next_cursor >= batch["rows"]
    _add_single_counts(ports, item, cursor=cursor, next_cursor=next_cursor, counts=counts, done=done)
    return {"cursor": next_cursor, "done": done, "waitSeconds": 0, "counts": counts}


def _add_single_counts(
    ports: Ports, item: dict, *, cursor: int, next_cursor: int, counts: dict, done: bool
) -> None:
    job_id, index = item["jobId"], item["batch"]["batchIndex"]
    record = ports.jobs.get_batch(job_id, index) or {}
    if record.get("cursor", 0) != cursor:
        return  # this chunk was recorded by an earlier try
    totals = dict.fromkeys(("succeeded", "failed", "not_found", "pending"), 0) | (record.get("counts") or {})
    for name, value in counts.items():
        totals[name] += value
    changes = {"cursor": next_cursor, "counts": totals, "status": END_COMPLETE.upper() if done else "SENDING"}
    if done:
        changes["endedAt"] = _iso(ports.now())
    ports.jobs.update_batch(job_id, index, changes, expect={"cursor": cursor})


# ------------------------------------------------------------------------------------- finalize
def finalize_job(ports: Ports, job_id: str) -> dict:
    """Add up every row, write the report, set the final status, tell a person when needed."""
    job = ports.jobs.get_job(job_id)
    if job is None:
        raise LookupError(f"job {job_id} not found")
    batches = sorted(ports.jobs.list_batches(job_id), key=lambda b: b["batchIndex"])
    rows_account = account(job, batches)  # raises AccountingError: never a silent mismatch
    status = JobStatus.COMPLETE if rows_account.clean else JobStatus.COMPLETE_WITH_ERRORS
    prefix = job_prefix(job_id)
    report_rows_key = f"{prefix}report/rows.csv"
    _upload_lines(ports, report_rows_key, _report_rows(ports, job, batches), header=True)
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
        "rowsReport": report_rows_key,
        "finishedAt": _iso(ports.now()),
    }
    summary_key = f"{prefix}report/summary.json"
    ports.objects.put_json(summary_key, summary)
    ports.jobs.update_job(
        job_id,
        {
            "status": status,
            **rows_account.to_dict(),
            "reportKey": summary_key,
            "reportRowsKey": report_rows_key,
            "finishedAt": summary["finishedAt"],
        },
    )
    if status != JobStatus.COMPLETE:
        ports.notifier.notify(
            f"target-profile-sync: job {job_id} {status}",
            _account_message(job, status, rows_account.to_dict(), summary_key),
        )
    return {
        "jobId": job_id,
        "status": status,
        **rows_account.to_dict(),
        "durationSeconds": _seconds_since(job.get("createdAt"), ports.now()),
    }


def _seconds_since(stamp: str | None, now: float) -> int | None:
    """From the job's creation (the drop) to now; None when the record has no usable time."""
    try:
        return max(0, int(now - datetime.fromisoformat(stamp).timestamp())) if stamp else None
    except ValueError:
        return None


def _report_rows(ports: Ports, job: dict, batches: list[dict]) -> Iterator[bytes]:
    """The rejected rows (from the rejects file), then each batch's non-success rows.

    Streamed: memory stays flat however many rows there are (_upload_lines spools them to disk).
    """
    if job.get("rejectsKey"):
        with ports.objects.open(job["rejectsKey"]) as body, _any_field_size():
            text = io.TextIOWrapper(body, encoding="utf-8", errors="replace", newline="")
            rejected = (
                (
                    row["line"],
                    _rejected_id(row.get("original") or ""),
                    "rejected",
                    f"{row['reason']}: {spreadsheet_unsafe(row.get('detail') or '')}".rstrip(": "),
                )
                for row in csv.DictReader(text)
            )
            yield from rows_csv(rejected, "")
    prefix = f"{job_prefix(job['jobId'])}results/"
    for key in sorted(ports.objects.list_keys(prefix)):
        with ports.objects.open(key) as body:
            while chunk := body.read(1 << 20):
                yield chunk


def _rejected_id(original: str) -> str:
    # The id is the first field of the line as the rejects file keeps it (rows_csv guards it again).
    return spreadsheet_unsafe(original).split(",", 1)[0][:256]


@contextlib.contextmanager
def _any_field_size() -> Iterator[None]:
    """Read rejects files of any age: before the cut copy, a rejected line of up to 1 MB was kept
    whole, past the csv module's 128 KB field limit."""
    previous = csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _account_message(job: dict, status: str, rows: dict, summary_key: str) -> str:
    parts = ", ".join(f"{name} {value:,}" for name, value in rows.items())
    return (
        f"Job {job['jobId']} ended {status}.\n"
        f"Source: s3://{job.get('sourceBucket')}/{job.get('sourceKey')}\n"
        f"Rows: {parts}\n"
        f"Report: s3://{job.get('sourceBucket')}/{summary_key}\n"
        "Every row that is not a success, with its line number, is in report/rows.csv"
        + (
            f" (except {unlisted:,} rejected rows, counted by reason in summary.json)."
            if (unlisted := job.get("rejectedNotListed"))
            else "."
        )
    )


def job_failed(ports: Ports, job_id: str, error: dict) -> dict:
    """A step failed for good: the job gets a final status and a person is told which batches stopped."""
    reason = error_reason(error)
    unfinished = [
        f"{b['batchIndex']} ({b.get('status', 'PENDING')})"
        for b in sorted(ports.jobs.list_batches(job_id), key=lambda b: b["batchIndex"])
        if b.get("counts") is None
    ]
    if unfinished:
        reason += f"; batches that did not finish: {', '.join(unfinished)}"
    job = ports.jobs.get_job(job_id) or {"jobId": job_id}
    ports.jobs.update_job(
        job_id, {"status": JobStatus.FAILED, "reason": reason, "finishedAt": _iso(ports.now())}
    )
    ports.notifier.notify(
        f"target-profile-sync: job {job_id} FAILED",
        f"Job {job_id} failed.\n"
        f"Source: s3://{job.get('sourceBucket')}/{job.get('sourceKey')}\n"
        f"Reason: {reason}\n"
        "Batches that finished keep their results; see profile-sync status for each batch.",
    )
    return {"jobId": job_id, "status": JobStatus.FAILED, "reason": reason}
