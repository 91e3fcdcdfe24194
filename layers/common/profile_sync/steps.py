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
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from profile_sync import poll_schedule
from profile_sync.adobe_target.client import TargetClient
from profile_sync.adobe_target.errors import (
    TargetAuthError,
    TargetError,
    TargetMaybeAccepted,
    TargetRejected,
    TargetRetryLater,
)
from profile_sync.adobe_target.responses import BatchStatus as TargetBatchStatus
from profile_sync.delta.job import update_from_job
from profile_sync.delta.snapshot import PointerStore
from profile_sync.model import (
    BATCH_ROW_OUTCOMES,
    BatchEnd,
    BatchStatus,
    JobKeys,
    JobStatus,
    RowOutcome,
    TargetState,
)
from profile_sync.outcomes import (
    FAILED,
    MAYBE_ACCEPTED_REASON,
    PENDING,
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
from profile_sync.settings import TARGET_ID_MAX_CHARS, Settings
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
    snapshots: PointerStore | None = None  # delta sync's snapshot pointers


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
        job_id, index, {"status": BatchStatus.WAITING_FOR_QUOTA, "quotaWaitSeconds": decision.wait_seconds}
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


# ------------------------------------------------------------------------------------- job stop
def job_stop(ports: Ports, job_id: str) -> str | None:
    """Why the job stopped calling Target (an authentication failure), or None: checked before each call."""
    failure = (ports.jobs.get_job(job_id) or {}).get("authFailure")
    return auth_reason(failure) if failure else None


def auth_reason(failure: dict) -> str:
    return (
        f"Target refused authentication: HTTP {failure.get('status') or '?'} from "
        f"{failure.get('endpoint')} after one token refresh. Check the profile token or OAuth "
        "credentials in the token secret, then drop the file again"
    )


def _stop_job_for_auth(ports: Ports, job_id: str, exc: TargetAuthError, endpoint: str) -> str:
    """Record on the job that Target refused our credentials: no batch of the job calls Target again."""
    failure = {"status": exc.status, "endpoint": endpoint, "at": _iso(ports.now())}
    ports.jobs.update_job(job_id, {"authFailure": failure})
    return auth_reason(failure)


def _endpoint(method: str, url: str) -> str:
    """An endpoint for a reason: method, host and path (no query: it may hold ids)."""
    parts = urlsplit(url)
    return f"{method} {parts.scheme}://{parts.netloc}{parts.path}"


# ------------------------------------------------------------------------------------- bulk
def submit_batch(ports: Ports, item: dict) -> dict:
    """Upload the batch file once; returns the first poll state, or ends the batch.

    A "submitting" marker is written (conditionally) on the batch record before the POST. A
    re-entered step (the Lambda timed out or crashed after its POST and Step Functions retried)
    finds it and never POSTs again: Target may have accepted the batch. The marker is cleared
    only when Target's answer proves it did not (a refusal the client retries later).
    """
    job_id, batch = item["jobId"], item["batch"]
    index = batch["batchIndex"]
    stop = job_stop(ports, job_id)
    if stop:
        return _ended(ports, item, BatchEnd.NOT_SENT, reason=f"not sent to Target: the job stopped. {stop}")
    record = ports.jobs.get_batch(job_id, index) or {}
    if record.get("submitStartedAt"):
        return _resume_submit(ports, item, record)
    client = ports.target(item["clientCode"])
    endpoint = _endpoint("POST", client.batch_url(item["apiVersion"]))
    calls = record.get("submitCalls", 0)
    with ports.objects.open(batch["key"]) as body:  # before the marker: an S3 error here sent nothing
        if not ports.jobs.update_batch(
            job_id,
            index,
            {"status": BatchStatus.SUBMITTING, "submitStartedAt": _iso(ports.now())},
            expect={"submitStartedAt": ""},
        ):
            return _resume_submit(ports, item, ports.jobs.get_batch(job_id, index) or {})
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
                    "lastAnswer": _answer(exc),
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
                reason=f"{MAYBE_ACCEPTED_REASON} ({_answer(exc)})",
                calls=calls,
            )
        except TargetAuthError as exc:
            reason = _stop_job_for_auth(ports, job_id, exc, endpoint)
            return _ended(ports, item, BatchEnd.AUTH_FAILED, reason=reason, calls=calls + exc.attempts)
        except TargetRejected as exc:
            calls += exc.attempts
            return _ended(
                ports,
                item,
                BatchEnd.SUBMIT_FAILED,
                reason=f"Target refused the batch: {_PER_TRY.sub('', str(exc))}",
                calls=calls,
            )
    return _submitted(
        ports,
        item,
        result.status_url,
        result.batch_id,
        attempts=result.attempts,
        calls=calls + result.attempts,
    )


def _calls_answer(exc: TargetError) -> str:
    last = f"answered HTTP {exc.status}" if exc.status is not None else "got no answer"
    return f"{exc.attempts} call(s), the last {last}"


def _answer(exc: TargetError) -> str:
    """Target's last answer and the calls that got it, without the client's wording."""
    answer = f"HTTP {exc.status}" if exc.status is not None else "no answer"
    return f"{answer}, {exc.attempts} call(s) in this try"


def _submitted(
    ports: Ports, item: dict, status_url: str, batch_id: str, *, attempts: int, calls: int
) -> dict:
    now = ports.now()
    settings = ports.settings
    ports.jobs.update_batch(
        item["jobId"],
        item["batch"]["batchIndex"],
        {
            "status": BatchStatus.SUBMITTED,
            "statusUrl": status_url,
            "targetBatchId": batch_id,
            "submittedAt": _iso(now),
            "submitAttempts": attempts,
            "submitCalls": calls,
        },
    )
    return _first_poll(settings, status_url, now)


def _first_poll(settings: Settings, status_url: str, now: float) -> dict:
    return {
        "done": False,
        "statusUrl": status_url,
        "submittedAt": now,
        "deadlineAt": now + settings.poll_deadline_seconds,
        "polls": 0,
        "unknownStreak": 0,
        "delaySeconds": poll_schedule.first_delay(settings),
    }


def _resume_submit(ports: Ports, item: dict, record: dict) -> dict:
    """An earlier try of this step began the POST and did not finish: never send the batch again."""
    if record.get("counts") is not None:  # that try ended the batch already
        return {"done": True, "end": BatchStatus(record["status"]).end, "counts": record["counts"]}
    if record.get("statusUrl"):
        return _first_poll(ports.settings, record["statusUrl"], ports.now())
    return _ended(ports, item, BatchEnd.MAYBE_ACCEPTED, calls=record.get("submitCalls"))


def _ended(ports: Ports, item: dict, end: BatchEnd, *, reason: str = "", calls: int | None = None) -> dict:
    counts = record_batch_end(ports, item, end, reason=reason, calls=calls)
    return {"done": True, "end": end, "counts": counts}


def error_reason(error: dict) -> str:
    """A Step Functions error (Error + Cause, the Cause being Lambda's error JSON) in one line."""
    cause = error.get("Cause", "")
    with contextlib.suppress(ValueError, AttributeError):
        cause = json.loads(cause).get("errorMessage", cause)
    # A Target error's own wording is per try ("after 3 attempt(s)", "giving up for now"): the
    # reason keeps what Target answered.
    cause = _PER_TRY.sub("", str(cause)).strip(" |:")
    return f"{error.get('Error', 'error')}: {_short(cause)}"


_PER_TRY = re.compile(r"\s*\|\s*after \d+ attempt\(s\)|: giving up for now")


def fail_batch(ports: Ports, item: dict) -> dict:
    """A step of the batch failed for good (after its retries): record the batch's end.

    Only a refusal before acceptance fails the rows: Target answered the upload's every try and
    never took it (`stage` "submit", a TargetRetryLater). A batch whose upload may have reached
    Target (the "submitting" marker is still set), whose status can't be read (`stage` "status")
    or whose step failed otherwise (AWS errors, a bug) has pending rows, with the reason.
    """
    error = item.get("error") or {}
    error_type = error.get("Error", "error")
    record = ports.jobs.get_batch(item["jobId"], item["batch"]["batchIndex"]) or {}
    if item.get("apiVersion") == "single":  # the chunks answered so far keep their answers
        reason = f"the update's outcome is unknown: a workflow step failed ({error_reason(error)})"
        if (record.get("cursor") or 0) >= item["batch"]["rows"]:
            return {"done": True, "end": BatchEnd.COMPLETE, "counts": record.get("counts") or {}}
        counts = end_single_rest(ports, item, record.get("cursor") or 0, reason)
        return {"done": True, "end": BatchEnd.STEP_FAILED, "counts": counts}
    if record.get("counts") is not None:  # the batch ended before its step failed
        return {"done": True, "end": BatchStatus(record["status"]).end, "counts": record["counts"]}
    calls = record.get("submitCalls")
    if item.get("stage") == "status" or record.get("statusUrl"):
        end, reason = (
            BatchEnd.STATUS_FAILED,
            (f"Target accepted the batch; its status could not be read ({error_reason(error)})"),
        )
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


def _last(record: dict) -> str:
    answer = (record.get("lastAnswer") or "no answer").split(",", 1)[0]
    return "got no answer" if answer == "no answer" else f"answered {answer}"


def poll_batch(ports: Ports, item: dict) -> dict:
    """One status call; ends the batch on complete, stuck, a vanished status or the deadline."""
    poll = dict(item["poll"])
    now = ports.now()
    stop = job_stop(ports, item["jobId"])
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
        status = ports.target(item["clientCode"]).batch_status(poll["statusUrl"])
    except TargetRetryLater as exc:
        status = None  # Target is busy: ask again later, it does not count as vanished
        retry_after = exc.retry_after_seconds
    except TargetAuthError as exc:
        reason = _stop_job_for_auth(ports, item["jobId"], exc, _endpoint("GET", poll["statusUrl"]))
        return _end_poll(
            ports, item, poll, BatchEnd.STATUS_FAILED, reason=f"Target accepted the batch; {reason}"
        )
    except TargetRejected as exc:
        return _end_poll(
            ports,
            item,
            poll,
            BatchEnd.STATUS_FAILED,
            reason=f"Target accepted the batch; its status could not be read: {_PER_TRY.sub('', str(exc))}",
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
        item["jobId"], item["batch"]["batchIndex"], {"status": BatchStatus.POLLING, "polls": poll["polls"]}
    )
    # The wait grows with the time the batch has taken (poll_schedule: bounded lag and poll count);
    # at least what Target asked for when it was busy, never past the deadline.
    delay = poll_schedule.next_delay(
        ports.settings, submitted_at=poll.get("submittedAt", now), now=now, deadline_at=poll["deadlineAt"]
    )
    poll["delaySeconds"] = max(1, int(min(max(delay, retry_after), poll["deadlineAt"] - now)))
    return poll


def _end_poll(
    ports: Ports,
    item: dict,
    poll: dict,
    end: BatchEnd,
    *,
    status: TargetBatchStatus | None = None,
    reason: str = "",
) -> dict:
    counts = record_batch_end(ports, item, end, status=status, reason=reason, polls=poll["polls"])
    poll.update(done=True, end=end, counts=counts)
    return poll


def record_batch_end(
    ports: Ports,
    item: dict,
    end: BatchEnd,
    *,
    status: TargetBatchStatus | None = None,
    reason: str = "",
    polls: int | None = None,
    calls: int | None = None,
) -> dict:
    """Write the batch's non-success rows (with source lines) to S3 and its counts to its record."""
    job_id, batch = item["jobId"], item["batch"]
    outcome = batch_outcome(end, status, reason)
    line_runs = _line_runs(ports, item)
    results_key = JobKeys(job_id).results(batch["batchIndex"])
    with ports.objects.open(batch["key"]) as body:
        rows = resolve_rows(outcome, batch_rows(_lines(body)), line_runs)
        _upload_lines(ports, results_key, rows_csv(rows, batch["batchIndex"]))
    ports.jobs.update_batch(
        job_id,
        batch["batchIndex"],
        {
            "status": end.status,
            "counts": outcome.counts,
            "resultsKey": results_key,
            "endedAt": _iso(ports.now()),
            "reason": outcome.reason,
            "polls": polls,
            "submitCalls": calls,
            "targetState": status.state if status else None,
            "targetCounts": _target_counts(status),
        },
    )
    return outcome.counts


def _target_counts(status: TargetBatchStatus | None) -> dict | None:
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
    manifest = ports.objects.get_json(item.get("manifestKey") or JobKeys(item["jobId"]).manifest)
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
    bounded concurrency and records the chunk's answers; a retried call never counts twice. An
    authentication failure stops the job: the rows not sent end pending.
    """
    job_id, batch = item["jobId"], item["batch"]
    state = dict(item.get("single") or {"cursor": 0})
    cursor = state["cursor"]
    rows = min(ports.settings.single_update_chunk_rows, batch["rows"] - cursor)
    if rows <= 0:
        return {"cursor": cursor, "done": True, "waitSeconds": 0}
    stop = job_stop(ports, job_id)
    if stop:
        counts = end_single_rest(ports, item, cursor, f"not sent to Target: the job stopped. {stop}")
        return {"cursor": batch["rows"], "done": True, "waitSeconds": 0, "counts": counts}
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
    refused: list[TargetAuthError] = []
    stopped = threading.Event()  # after an authentication failure no row is sent

    def send(line: bytes) -> tuple[str, str]:
        if stopped.is_set():
            return PENDING, "not sent to Target: the job stopped on an authentication failure"
        fields = line.decode("utf-8").split(",")
        params = {name: value for name, value in zip(names, fields[1:], strict=False) if value}
        try:
            client.single_update(id_type, unquote(fields[0]), params, encoded=True)
            return SUCCEEDED, ""
        except TargetAuthError as exc:
            stopped.set()
            refused.append(exc)
            return FAILED, "Target refused authentication for this update"
        except TargetRetryLater as exc:
            return FAILED, f"Target did not accept the update: {_calls_answer(exc)}"
        except TargetError as exc:
            return FAILED, f"Target refused the update: {_short(_PER_TRY.sub('', str(exc)), 200)}"

    with ThreadPoolExecutor(max_workers=max(1, ports.settings.single_update_concurrency)) as pool:
        answers = list(pool.map(send, chunk))
    if refused:
        reason = _stop_job_for_auth(ports, job_id, refused[0], _endpoint("GET", client.update_url()))
        answers = [(outcome, f"{why}. {reason}" if outcome != SUCCEEDED else why) for outcome, why in answers]

    line_runs = _line_runs(ports, item)
    counts = dict.fromkeys((SUCCEEDED, FAILED, PENDING), 0)
    failures = []
    for offset, (line, (outcome, reason)) in enumerate(zip(chunk, answers, strict=True)):
        counts[outcome] += 1
        if outcome != SUCCEEDED:
            visitor_id = line.split(b",", 1)[0].decode("utf-8")
            failures.append((line_runs.line(cursor + offset), visitor_id, outcome, reason))
    next_cursor = cursor + rows
    key = JobKeys(job_id).results(batch["batchIndex"], cursor)
    _upload_lines(ports, key, rows_csv(failures, batch["batchIndex"]))
    done = next_cursor >= batch["rows"]
    _add_single_counts(ports, item, cursor=cursor, next_cursor=next_cursor, counts=counts, done=done)
    if refused and not done:
        rest = end_single_rest(ports, item, next_cursor, f"not sent to Target: the job stopped. {reason}")
        counts = {name: counts.get(name, 0) + rest.get(name, 0) for name in counts}
        next_cursor, done = batch["rows"], True
    return {"cursor": next_cursor, "done": done, "waitSeconds": 0, "counts": counts}


def end_single_rest(ports: Ports, item: dict, cursor: int, reason: str) -> dict:
    """The rows of a single-update batch from `cursor` on end pending, unsent, with the reason."""
    batch = item["batch"]
    line_runs = _line_runs(ports, item)
    with ports.objects.open(batch["key"]) as body:
        ids = [visitor_id for index, visitor_id in batch_rows(_lines(body)) if index >= cursor]
    rows = [(line_runs.line(cursor + offset), vid, PENDING, reason) for offset, vid in enumerate(ids)]
    key = JobKeys(item["jobId"]).results(batch["batchIndex"], cursor)
    _upload_lines(ports, key, rows_csv(rows, batch["batchIndex"]))
    counts = {PENDING: len(rows)}
    _add_single_counts(ports, item, cursor=cursor, next_cursor=batch["rows"], counts=counts, done=True)
    ports.jobs.update_batch(item["jobId"], batch["batchIndex"], {"reason": reason})
    return counts


def _add_single_counts(
    ports: Ports, item: dict, *, cursor: int, next_cursor: int, counts: dict, done: bool
) -> None:
    job_id, index = item["jobId"], item["batch"]["batchIndex"]
    record = ports.jobs.get_batch(job_id, index) or {}
    if record.get("cursor", 0) != cursor:
        return  # this chunk was recorded by an earlier try
    totals = dict.fromkeys(BATCH_ROW_OUTCOMES, 0) | (record.get("counts") or {})
    for name, value in counts.items():
        totals[name] += value
    changes = {
        "cursor": next_cursor,
        "counts": totals,
        "status": BatchStatus.COMPLETE if done else BatchStatus.SENDING,
    }
    if done:
        changes["endedAt"] = _iso(ports.now())
    ports.jobs.update_batch(job_id, index, changes, expect={"cursor": cursor})


# ------------------------------------------------------------------------------------- finalize
def finalize_job(ports: Ports, job_id: str, failure: str | None = None) -> dict:
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
    report_rows_key = keys.report_rows
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
        **({"delta": delta} if delta is not None else {}),
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
        "reason": failure,
    }
    summary_key = keys.report_summary
    ports.objects.put_json(summary_key, summary)
    ports.jobs.update_job(
        job_id,
        {
            "status": status,
            **rows_account.to_dict(),
            "reportKey": summary_key,
            "reportRowsKey": report_rows_key,
            "finishedAt": summary["finishedAt"],
            "reason": failure,
            **({"deltaUpdate": delta} if delta is not None else {}),
        },
    )
    if status != JobStatus.COMPLETE:
        ports.notifier.notify(
            f"target-profile-sync: job {job_id} {status}",
            _account_message(job, status, rows_account.to_dict(), summary_key, failure),
        )
    return {
        "jobId": job_id,
        "status": status,
        **({"reason": failure} if failure else {}),
        **rows_account.to_dict(),
        **({"delta": delta} if delta is not None else {}),
        "durationSeconds": _seconds_since(job.get("createdAt"), ports.now()),
    }


def _update_delta(ports: Ports, job: dict, batches: list[dict]) -> dict | None:
    """Delta sync: the rows Target confirmed go into the client's snapshot (profile_sync.delta).

    Never fails the job: a snapshot not updated only means these rows are sent again next time.
    """
    if not job.get("deltaKey") or ports.snapshots is None:
        return None
    try:
        return update_from_job(
            job=job,
            batches=batches,
            objects=ports.objects,
            pointers=ports.snapshots,
            now=_iso(ports.now()),
            max_attempts=ports.settings.delta_merge_attempts,
        )
    except Exception as exc:
        return {
            "error": f"{type(exc).__name__}: {_short(str(exc), 200)}",
            "skipped": "the snapshot was not updated: this job's rows are sent again next time",
        }


def settle_unfinished(ports: Ports, job: dict) -> list[dict]:
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
        item = {"jobId": job_id, "batch": record, "manifestKey": job.get("manifestKey")}
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


def _account_message(job: dict, status: str, rows: dict, summary_key: str, reason: str | None = None) -> str:
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


def job_failed(ports: Ports, job_id: str, error: dict) -> dict:
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
    job = ports.jobs.get_job(job_id) or {"jobId": job_id}
    if job.get("authFailure"):
        reason = f"{auth_reason(job['authFailure'])}; then {reason}"
    try:
        # The report, with every row accounted (unfinished batches pending), whenever it can be built.
        return finalize_job(ports, job_id, failure=reason)
    except Exception as exc:  # the job must still end FAILED, with why
        reason += f"; no report: {type(exc).__name__}: {_short(str(exc), 200)}"
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
