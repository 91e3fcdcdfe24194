"""The pipeline's vocabulary: statuses, outcomes, reason codes, the shape of every step's payload and
record, and where a job's files live in S3.

Every value here is stored (DynamoDB records, S3 reports), read by the state machine's Choices, or
emitted as a metric: a StrEnum member is the exact string it replaced, and renaming one is a data
migration, not a refactor. Nothing here calls AWS or Target.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict


# ------------------------------------------------------------------------------------- statuses
class JobStatus(StrEnum):
    RECEIVED = "RECEIVED"  # record created, file being validated (or validated, workflow not started)
    REJECTED = "REJECTED"  # the file failed as a whole: nothing sent
    QUEUED = "QUEUED"  # validated and split, workflow started
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    COMPLETE_WITH_ERRORS = "COMPLETE_WITH_ERRORS"
    FAILED = "FAILED"


FINAL_JOB_STATUSES = frozenset(
    {JobStatus.COMPLETE, JobStatus.COMPLETE_WITH_ERRORS, JobStatus.FAILED, JobStatus.REJECTED}
)


class TargetState(StrEnum):
    """A bulk batch's status as Target reports it (<status> of the batch status answer)."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    STUCK = "stuck"
    UNKNOWN = "unknown"  # no status in the answer (or none Target would name): maybe vanished


class BatchEnd(StrEnum):
    """How a batch ended: Target's own complete/stuck, or what stopped it before that."""

    COMPLETE = "complete"
    STUCK = "stuck"
    DEADLINE = "deadline"  # polling deadline reached before Target completed the batch
    VANISHED = "vanished"  # Target stopped reporting a status for it
    SUBMIT_FAILED = "submit_failed"  # Target did not accept the upload
    STATUS_FAILED = "status_failed"  # submitted, but its status could not be read (auth, refusal)
    # The body reached Target, which may have accepted it, and no status URL came back: never resent.
    MAYBE_ACCEPTED = "maybe_accepted"
    AUTH_FAILED = "auth_failed"  # Target refused our credentials for this batch's upload
    NOT_SENT = "not_sent"  # the job stopped (authentication) before this batch reached Target
    STEP_FAILED = "step_failed"  # a step of the batch failed for good (AWS errors, a bug)

    @property
    def status(self) -> BatchStatus:
        """The batch record's status once it ended this way."""
        return BatchStatus(self.value.upper())


class BatchStatus(StrEnum):
    """The `status` of a batch record: where it is in the workflow, then how it ended (BatchEnd.status)."""

    PENDING = "PENDING"  # split by ingest, no step has run
    WAITING_FOR_QUOTA = "WAITING_FOR_QUOTA"
    SUBMITTING = "SUBMITTING"  # the upload began: it may have reached Target
    SUBMIT_RETRY = "SUBMIT_RETRY"  # Target answered and did not take it: another try may POST it
    SUBMITTED = "SUBMITTED"
    POLLING = "POLLING"
    SENDING = "SENDING"  # single updates: some chunks sent
    COMPLETE = "COMPLETE"
    STUCK = "STUCK"
    DEADLINE = "DEADLINE"
    VANISHED = "VANISHED"
    SUBMIT_FAILED = "SUBMIT_FAILED"
    STATUS_FAILED = "STATUS_FAILED"
    MAYBE_ACCEPTED = "MAYBE_ACCEPTED"
    AUTH_FAILED = "AUTH_FAILED"
    NOT_SENT = "NOT_SENT"
    STEP_FAILED = "STEP_FAILED"

    @property
    def end(self) -> BatchEnd | None:
        """How the batch ended, or None while it is under way."""
        try:
            return BatchEnd(self.value.lower())
        except ValueError:
            return None


class RowOutcome(StrEnum):
    """The one bucket each received row ends in: received = the sum of them all."""

    REJECTED = "rejected"  # by validation: never sent
    SKIPPED = "skipped"  # by validation (e.g. nothing to update): never sent
    UNCHANGED = "unchanged"  # delta sync: Target already confirmed these values for the id: not sent
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_FOUND = "not_found"
    PENDING = "pending"


# The buckets a sent (batched) row can end in, in the report's order. A new outcome goes here and in
# RowOutcome only: the account, the counts on batch records, the CLI and the metrics follow.
BATCH_ROW_OUTCOMES: tuple[RowOutcome, ...] = (
    RowOutcome.SUCCEEDED,
    RowOutcome.FAILED,
    RowOutcome.NOT_FOUND,
    RowOutcome.PENDING,
)
# The job's row account, in the order the README writes it: received = rejected + skipped + unchanged
# + the rest.
ACCOUNT_FIELDS: tuple[str, ...] = ("received", "rejected", "skipped", "unchanged", *BATCH_ROW_OUTCOMES)


class RejectReason(StrEnum):
    """Why validation rejected a row: the codes of rejects.csv, job `reasons` and a metric dimension."""

    INVALID_QUOTING = "invalid_quoting"
    INVALID_UTF8 = "invalid_utf8"
    TOO_MANY_FIELDS = "too_many_fields"
    EMPTY_ID = "empty_id"
    INVALID_ENCODING = "invalid_encoding"
    AMBIGUOUS_PLUS = "ambiguous_plus"
    CONTROL_CHARACTER = "control_character"
    ID_TOO_LONG = "id_too_long"
    INVALID_THIRD_PARTY_ID = "invalid_third_party_id"
    ROW_TOO_LARGE = "row_too_large"


ApiVersion = Literal["v2", "v1", "single"]
RowCounts = dict[str, int]  # RowOutcome value -> rows (dynamic keys: a TypedDict can't be indexed by one)


def zero_counts() -> RowCounts:
    """Every outcome a batch row can end in, at 0."""
    return {outcome: 0 for outcome in BATCH_ROW_OUTCOMES}


# ------------------------------------------------------------------------------------- S3 layout
JOBS_PREFIX = "jobs/"


@dataclass(frozen=True)
class JobKeys:
    """Where a job's files live: everything under jobs/<jobId>/ (one lifecycle rule, one IAM prefix)."""

    job_id: str

    SUMMARY = "report/summary.json"
    ROWS = "report/rows.csv"
    REJECTS = "rejects.csv"
    # What a person downloads as the job's report (profile-sync report), relative to the prefix.
    REPORT_FILES = (SUMMARY, ROWS, REJECTS)

    @property
    def prefix(self) -> str:
        return f"{JOBS_PREFIX}{self.job_id}/"

    @property
    def manifest(self) -> str:
        return f"{self.prefix}manifest.json"

    @property
    def batch_list(self) -> str:
        """The pointers the state machine's map reads (BatchPointer items)."""
        return f"{self.prefix}batches.json"

    @property
    def rejects(self) -> str:
        return self.prefix + self.REJECTS

    def batch_file(self, name: str) -> str:
        return f"{self.prefix}batches/{name}"

    @property
    def results_prefix(self) -> str:
        return f"{self.prefix}results/"

    def results(self, batch_index: int, cursor: int | None = None) -> str:
        """A batch's non-success rows; single updates write one file per chunk (from `cursor`)."""
        chunk = "" if cursor is None else f"-{cursor:07d}"
        return f"{self.results_prefix}batch-{batch_index:05d}{chunk}.csv"

    @property
    def report_summary(self) -> str:
        return self.prefix + self.SUMMARY

    @property
    def report_rows(self) -> str:
        return self.prefix + self.ROWS


# ------------------------------------------------------------------------------------- records
class AuthFailure(TypedDict):
    status: int | None
    endpoint: str
    at: str


class JobRecord(TypedDict, total=False):
    """A job's record in the jobs table (ingest creates it, finalize closes it)."""

    jobId: str
    status: JobStatus
    reason: str | None
    sourceBucket: str
    sourceKey: str
    sourceSize: int | None
    createdAt: str
    updatedAt: str
    finishedAt: str
    clientCode: str
    apiVersion: ApiVersion
    inputMode: str
    profileVersion: int | None
    idColumn: str | None
    # Validation's counts
    received: int
    accepted: int
    rejected: int
    skipped: int
    unchanged: int  # delta sync: accepted rows whose values Target already confirmed (not batched)
    duplicateIds: int
    reasons: dict[str, int]  # RejectReason -> rows
    rejectedNotListed: int
    delta: Literal["on"]  # delta sync on for this job (profile_sync.delta)
    deltaKey: str  # the job's delta manifest (the diff at ingest), read by the snapshot update
    warnings: list[str]
    batchCount: int
    manifestKey: str
    batchesKey: str
    rejectsKey: str
    startAttempts: int
    executionId: str
    # The workflow's
    quotaWaitNotified: bool
    authFailure: AuthFailure
    succeeded: int
    failed: int
    not_found: int
    pending: int
    reportKey: str
    reportRowsKey: str
    deltaUpdate: dict[str, Any]  # the snapshot update after the job (delta sync)
    # Re-drives (profile_sync.redrive): the job this one re-drives, the jobs that re-drive this one
    # (redriveCount: their number, for conditional appends), the automatic re-drive's drop key.
    parentJobId: str
    redrivenBy: list[str]
    redriveCount: int
    autoRedriveKey: str
    autoRedrive: dict[str, Any]  # what the automatic re-drive did (finalize), or why it didn't
    autoRedriveOf: str  # this job is the automatic re-drive of that job: it never re-drives itself
    # The landing check (profile_sync.landing_step): status, figures and reason.
    landingCheck: dict[str, Any]


class BatchPointer(TypedDict):
    """One batch file as ingest wrote it: an item of batches.json, the map's `batch`."""

    jobId: str
    batchIndex: int
    key: str
    rows: int
    bytes: int


class BatchRecord(TypedDict, total=False):
    """A batch's record in the jobs table: the pointer (BatchPointer's fields, as ingest wrote them),
    then what the workflow's steps recorded."""

    jobId: str
    batchIndex: int
    key: str
    rows: int
    bytes: int
    status: BatchStatus
    reason: str | None
    quotaReservedOn: str
    quotaWaitSeconds: int
    submitStartedAt: str  # the "submitting" marker: "" once Target's answer proved it did not take it
    submitCalls: int | None
    submitAttempts: int
    lastAnswer: str
    statusUrl: str
    targetBatchId: str
    submittedAt: str
    polls: int | None
    counts: RowCounts
    cursor: int  # single updates: rows sent so far
    resultsKey: str
    endedAt: str
    targetState: TargetState | None
    targetCounts: dict[str, int] | None


class ManifestBatch(BatchPointer):
    lineRuns: list[list[int]]  # [first row index in the batch, its source line]


class Manifest(TypedDict):
    jobId: str
    clientCode: str
    apiVersion: ApiVersion
    inputMode: str
    source: dict[str, str]
    idColumn: str | None
    columns: list[str]
    clientProfile: NotRequired[dict[str, Any]]
    counts: dict[str, Any]
    delta: NotRequired[dict[str, Any]]  # delta sync: the diff's summary
    warnings: list[str]
    batches: list[ManifestBatch]


# ------------------------------------------------------------------------------------- payloads
class WorkflowInput(TypedDict):
    """The execution's input, from ingest."""

    jobId: str
    bucket: str
    clientCode: str
    apiVersion: ApiVersion
    batchesKey: str
    manifestKey: str
    batchCount: int


class StepError(TypedDict, total=False):
    """What a Catch puts in the state: the error's name and Lambda's error JSON as its Cause."""

    Error: str
    Cause: str


class QuotaResult(TypedDict):
    granted: bool
    waitSeconds: int
    used: int
    limit: int
    window: str


class PollState(TypedDict, total=False):
    """The bulk branch's state between Submit, Wait and Poll (small: pointers and counters)."""

    done: bool
    statusUrl: str
    submittedAt: float
    deadlineAt: float
    polls: int
    unknownStreak: int
    delaySeconds: int
    # Once done
    end: BatchEnd
    counts: RowCounts


class BatchDone(TypedDict):
    """A step that ended its batch."""

    done: Literal[True]
    end: BatchEnd
    counts: RowCounts


class SingleState(TypedDict, total=False):
    """The single-update branch's state: the cursor into the batch's rows."""

    cursor: int
    done: bool
    waitSeconds: int
    counts: RowCounts


class BatchItem(TypedDict):
    """What each batch step of the map is given (ItemSelector, then each step's ResultPath)."""

    jobId: str
    clientCode: str
    apiVersion: ApiVersion
    manifestKey: str
    batch: BatchPointer
    single: NotRequired[SingleState]
    poll: NotRequired[PollState]
    error: NotRequired[StepError]
    stage: NotRequired[Literal["submit", "status"]]


class JobResult(TypedDict, total=False):
    """What finalize and job_failed return (the execution's output)."""

    jobId: str
    status: JobStatus
    reason: str | None
    received: int
    rejected: int
    skipped: int
    unchanged: int
    succeeded: int
    failed: int
    not_found: int
    pending: int
    delta: dict[str, Any]  # delta sync: the snapshot update (or why it was skipped)
    autoRedrive: dict[str, Any]  # REDRIVE_PENDING_AUTO: the re-drive file dropped (or why not)
    durationSeconds: int | None


def pointer_of(record: BatchRecord) -> BatchPointer:
    """The batch pointer a batch record holds (the Map's `batch`): the fields ingest wrote."""
    return {
        "jobId": record["jobId"],
        "batchIndex": record["batchIndex"],
        "key": record["key"],
        "rows": record["rows"],
        "bytes": record.get("bytes", 0),
    }
