"""What happened to each row of a batch, and the account of a whole job.

Every row ends in exactly one bucket: received = rejected + skipped + unchanged + succeeded +
failed + not_found + pending (unchanged: delta sync found Target already holds its values).
Where Target names rows (failed ids, or every row in the 2017-2020 format) they are mapped back
to their source lines; where a batch ends without per-row answers (stuck, deadline, vanished
status, refused upload) all its rows share the batch's outcome, so the report can still list every
row that is not a success.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

from profile_sync.adobe_target.responses import OUTCOME_FAILED, OUTCOME_PENDING, OUTCOME_SUCCESS, BatchStatus
from profile_sync.model import (
    ACCOUNT_FIELDS,
    BATCH_ROW_OUTCOMES,
    BatchEnd,
    BatchRecord,
    JobRecord,
    RowCounts,
    RowOutcome,
    TargetState,
    zero_counts,
)
from profile_sync.validate import spreadsheet_safe

SUCCEEDED, FAILED, NOT_FOUND, PENDING = (
    RowOutcome.SUCCEEDED,
    RowOutcome.FAILED,
    RowOutcome.NOT_FOUND,
    RowOutcome.PENDING,
)
REPORT_COLUMNS = ("line", "id", "outcome", "reason", "batch")

MAYBE_ACCEPTED_REASON = (
    "Target may have accepted the batch (its upload got no usable answer) and its status could not "
    "be followed; the batch was not sent again: check the profiles before sending these rows again"
)

# The rows of a batch that ended without Target naming them: (outcome, default reason).
_WHOLE_BATCH: dict[BatchEnd, tuple[RowOutcome, str]] = {
    BatchEnd.STUCK: (FAILED, "Target reported the batch stuck: it will not complete"),
    BatchEnd.DEADLINE: (PENDING, "polling deadline reached before Target completed the batch"),
    BatchEnd.VANISHED: (PENDING, "Target no longer reports a status for this batch"),
    BatchEnd.SUBMIT_FAILED: (FAILED, "Target did not accept the batch"),
    BatchEnd.STATUS_FAILED: (PENDING, "Target's status of the batch could not be read"),
    BatchEnd.MAYBE_ACCEPTED: (PENDING, MAYBE_ACCEPTED_REASON),
    BatchEnd.AUTH_FAILED: (FAILED, "Target refused authentication for the batch upload"),
    BatchEnd.NOT_SENT: (PENDING, "not sent to Target: the job stopped"),
    BatchEnd.STEP_FAILED: (PENDING, "the batch's outcome is unknown: a workflow step failed"),
}


@dataclass
class BatchOutcome:
    """How a batch ended and what decides each row's bucket; counts fill in as rows are resolved."""

    end: BatchEnd
    unnamed: tuple[str, str]  # (outcome, reason) of every row Target did not name
    by_id: dict[str, tuple[str, str]] = field(default_factory=dict)  # rows Target named
    # Target's counters (successfulUpdates, failedUpdates, profilesNotFound) of a complete batch;
    # they decide the rows Target counted without naming them (v1, the 2023 showDetails answer).
    counters: dict[str, int | None] | None = None
    counts: RowCounts = field(default_factory=zero_counts)
    notes: list[str] = field(default_factory=list)  # what the counters decided, for the batch's reason

    @property
    def reason(self) -> str | None:
        """The batch's reason: its end's, then what Target counted without naming rows."""
        parts = [self.unnamed[1]] if self.unnamed[0] != SUCCEEDED else []
        return "; ".join(parts + self.notes) or None


def end_of(status: BatchStatus) -> BatchEnd | None:
    if status.state == TargetState.COMPLETE:
        return BatchEnd.COMPLETE
    if status.state == TargetState.STUCK:
        return BatchEnd.STUCK
    return None


def batch_outcome(end: BatchEnd, status: BatchStatus | None = None, reason: str = "") -> BatchOutcome:
    """The rules for a batch that ended as `end`, from Target's last status if there is one."""
    if end == BatchEnd.COMPLETE:
        if status is None:
            raise ValueError("a complete batch needs its status")
        unnamed = (SUCCEEDED, "")
    else:
        outcome, default_reason = _WHOLE_BATCH[end]
        unnamed = (outcome, reason or default_reason)
    by_id: dict[str, tuple[str, str]] = {}
    # Rows Target named: failures today, every row in the 2017-2020 format (even when stuck).
    for visitor_id, answer in status.profiles if status is not None else ():
        if answer == OUTCOME_FAILED:
            by_id[visitor_id] = (FAILED, "Target reported the update failed")
        elif answer == OUTCOME_PENDING:
            by_id[visitor_id] = (PENDING, "Target still reported the update pending")
        elif answer == OUTCOME_SUCCESS:
            by_id[visitor_id] = (SUCCEEDED, "")
    counters = None
    if status is not None and end == BatchEnd.COMPLETE:
        counted: dict[str, int | None] = {
            SUCCEEDED: status.successful,
            FAILED: status.failed,
            NOT_FOUND: status.not_found,
        }
        if any(value is not None for value in counted.values()):
            counters = counted
    return BatchOutcome(end=end, unnamed=unnamed, by_id=by_id, counters=counters)


@dataclass
class LineRuns:
    """Maps a batch row index back to its source line (runs of consecutive lines)."""

    runs: list[tuple[int, int]]  # (first row index in the batch, its source line)

    def __post_init__(self) -> None:
        self._starts = [start for start, _ in self.runs]

    def line(self, row_index: int) -> int:
        at = bisect.bisect_right(self._starts, row_index) - 1
        start, line = self.runs[at]
        return line + row_index - start


def batch_rows(lines: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """(row index, id) of each data row of a batch file read as lines (the `batch=` header skipped)."""
    rows = iter(lines)
    next(rows, None)
    for index, raw in enumerate(rows):
        yield index, raw.split(b",", 1)[0].rstrip(b"\r\n").decode("utf-8")


def resolve_rows(
    outcome: BatchOutcome, rows: Iterable[tuple[int, str]], line_runs: LineRuns
) -> Iterator[tuple[int, str, str, str]]:
    """Every row of the batch that is not a success, as (source line, id, outcome, reason).

    Fills `outcome.counts` as it goes, so the counts and the listed rows always agree.
    """
    counts = outcome.counts
    named = zero_counts()
    unnamed = 0
    for index, encoded_id in rows:
        # Target answers with decoded ids; the batch file holds them URL-encoded.
        answer = outcome.by_id.get(encoded_id) or outcome.by_id.get(unquote(encoded_id))
        if answer is None:
            unnamed += 1
        else:
            named[answer[0]] += 1
        bucket, reason = answer or outcome.unnamed
        counts[bucket] += 1
        if bucket != SUCCEEDED:
            yield line_runs.line(index), encoded_id, bucket, reason
    if outcome.counters is not None:
        _apply_counters(outcome, named, unnamed)


def _apply_counters(outcome: BatchOutcome, named: dict[str, int], unnamed: int) -> None:
    """Rows of a complete batch that Target counted without naming them take its counters.

    They were counted as succeeded above (they can't be listed by line); Target's failed and
    not-found counters move them, in that order, and when Target also says how many succeeded,
    the rows its counters don't cover stay pending.
    """
    counts, counters = outcome.counts, outcome.counters or {}
    left = unnamed
    for bucket, word in ((FAILED, "failed"), (NOT_FOUND, "found no profile for")):
        moved = min(left, max(0, (counters.get(bucket) or 0) - named[bucket]))
        if moved:
            counts[SUCCEEDED] -= moved
            counts[bucket] += moved
            left -= moved
            outcome.notes.append(f"Target counted {moved} row(s) of this batch it {word} without naming them")
    succeeded = counters.get(SUCCEEDED)
    if succeeded is not None:
        uncovered = max(0, left - max(0, succeeded - named[SUCCEEDED]))
        if uncovered:
            counts[SUCCEEDED] -= uncovered
            counts[PENDING] += uncovered
            outcome.notes.append(
                f"Target's counters cover {sum(counts.values()) - uncovered} of the batch's "
                f"{sum(counts.values())} rows: the other {uncovered} are pending"
            )


def rows_csv(rows: Iterable[tuple[int | str, str, str, str]], batch_index: int | str) -> Iterator[bytes]:
    """The report lines (REPORT_COLUMNS, no header) of one batch ("" for rejected rows), streamed.

    Every text cell, ids included, goes through spreadsheet_safe: the ids and reasons come from the
    dropped file and from Target, and a spreadsheet must show them, not run them.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for line, visitor_id, outcome, reason in rows:
        writer.writerow((line, spreadsheet_safe(visitor_id), outcome, spreadsheet_safe(reason), batch_index))
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


@dataclass(frozen=True)
class JobAccount:
    received: int
    rejected: int
    skipped: int
    succeeded: int
    failed: int
    not_found: int
    pending: int
    unchanged: int = 0  # delta sync: values Target already confirmed, not sent

    @property
    def balanced(self) -> bool:
        return self.received == (
            self.rejected
            + self.skipped
            + self.unchanged
            + self.succeeded
            + self.failed
            + self.not_found
            + self.pending
        )

    @property
    def clean(self) -> bool:
        return not (self.rejected or self.failed or self.not_found or self.pending)

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in ACCOUNT_FIELDS}


class AccountingError(Exception):
    """The rows don't add up: a bug or lost data. Never papered over."""


def account(job: JobRecord, batches: Iterable[BatchRecord]) -> JobAccount:
    totals = zero_counts()
    accepted = 0
    for batch in batches:
        accepted += batch["rows"]
        counts = batch.get("counts")
        if counts is None:  # the batch never finished: its rows are still pending
            totals[PENDING] += batch["rows"]
            continue
        for name in BATCH_ROW_OUTCOMES:
            totals[name] += counts.get(name, 0)
    result = JobAccount(
        received=job.get("received", 0),
        rejected=job.get("rejected", 0),
        skipped=job.get("skipped", 0),
        unchanged=job.get("unchanged", 0),
        **totals,
    )
    if accepted + result.unchanged != job.get("accepted", 0) or not result.balanced:
        raise AccountingError(
            f"job {job.get('jobId')}: rows do not add up: received {result.received} != rejected "
            f"{result.rejected} + skipped {result.skipped} + unchanged {result.unchanged} + succeeded "
            f"{result.succeeded} + failed {result.failed} + not_found {result.not_found} + pending "
            f"{result.pending} (batches hold {accepted}, validation accepted {job.get('accepted', 0)})"
        )
    return result
