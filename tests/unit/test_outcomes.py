"""Row outcomes and the job's account: every row in exactly one bucket, mapped to its source line."""

from __future__ import annotations

import csv
import io

import pytest

from profile_sync.adobe_target.responses import BatchStatus
from profile_sync.model import BatchEnd
from profile_sync.outcomes import (
    FAILED,
    MAYBE_ACCEPTED_REASON,
    NOT_FOUND,
    PENDING,
    SUCCEEDED,
    AccountingError,
    LineRuns,
    account,
    batch_outcome,
    batch_rows,
    resolve_rows,
    rows_csv,
)

BATCH = [b"batch=thirdPartyId,tier", b"CRM-1,gold", b"CRM%202,gold", b"CRM-3,gold", b"CRM-4,gold"]
# Rows 0-1 came from source lines 2-3, then a rejected line 4, rows 2-3 from lines 5-6.
RUNS = LineRuns([(0, 2), (2, 5)])


def resolve(outcome):
    rows = list(resolve_rows(outcome, batch_rows(BATCH), RUNS))
    assert sum(outcome.counts.values()) == 4
    return rows


def test_line_runs_map_batch_rows_back_to_source_lines():
    assert [RUNS.line(i) for i in range(4)] == [2, 3, 5, 6]
    assert LineRuns([(0, 10)]).line(1000) == 1010


def test_batch_rows_skip_the_header_and_keep_ids_as_written():
    assert list(batch_rows([*BATCH, b"CRM-5\r"])) == [
        (0, "CRM-1"),
        (1, "CRM%202"),
        (2, "CRM-3"),
        (3, "CRM-4"),
        (4, "CRM-5"),
    ]


def test_complete_batch_rows_succeed_except_those_target_named_failed():
    status = BatchStatus(state="complete", profiles=[("CRM 2", "failed"), ("CRM-4", "failed")])
    outcome = batch_outcome(BatchEnd.COMPLETE, status)
    rows = resolve(outcome)
    # Target answers with decoded ids: "CRM 2" is the file's "CRM%202", on source line 3.
    assert rows == [
        (3, "CRM%202", FAILED, "Target reported the update failed"),
        (6, "CRM-4", FAILED, "Target reported the update failed"),
    ]
    assert outcome.counts == {SUCCEEDED: 2, FAILED: 2, NOT_FOUND: 0, PENDING: 0}


def test_a_complete_batch_needs_its_status():
    with pytest.raises(ValueError, match="needs its status"):
        batch_outcome(BatchEnd.COMPLETE)


def test_v1_not_found_rows_are_counted_not_named():
    outcome = batch_outcome(BatchEnd.COMPLETE, BatchStatus(state="complete", not_found=3))
    assert resolve(outcome) == []
    assert outcome.counts == {SUCCEEDED: 1, FAILED: 0, NOT_FOUND: 3, PENDING: 0}


def test_not_found_never_takes_more_than_the_rows_that_succeeded():
    status = BatchStatus(state="complete", not_found=9, profiles=[("CRM-1", "failed")])
    outcome = batch_outcome(BatchEnd.COMPLETE, status)
    resolve(outcome)
    assert outcome.counts == {SUCCEEDED: 0, FAILED: 1, NOT_FOUND: 3, PENDING: 0}


@pytest.mark.parametrize(
    ("end", "bucket", "reason"),
    [
        (BatchEnd.STUCK, FAILED, "Target reported the batch stuck: it will not complete"),
        (BatchEnd.DEADLINE, PENDING, "polling deadline reached before Target completed the batch"),
        (BatchEnd.VANISHED, PENDING, "Target no longer reports a status for this batch"),
        (BatchEnd.SUBMIT_FAILED, FAILED, "Target did not accept the batch"),
        (BatchEnd.STATUS_FAILED, PENDING, "Target's status of the batch could not be read"),
        (BatchEnd.MAYBE_ACCEPTED, PENDING, MAYBE_ACCEPTED_REASON),
        (BatchEnd.AUTH_FAILED, FAILED, "Target refused authentication for the batch upload"),
        (BatchEnd.NOT_SENT, PENDING, "not sent to Target: the job stopped"),
        (BatchEnd.STEP_FAILED, PENDING, "the batch's outcome is unknown: a workflow step failed"),
    ],
)
def test_batches_that_end_without_answers_give_every_row_the_batchs_outcome(end, bucket, reason):
    outcome = batch_outcome(end)
    rows = resolve(outcome)
    assert [(line, b, r) for line, _, b, r in rows] == [(line, bucket, reason) for line in (2, 3, 5, 6)]
    assert outcome.counts[bucket] == 4
    assert batch_outcome(end, reason="why").unnamed == (bucket, "why")


def test_counters_without_named_rows_decide_the_account():
    """Adobe's 2023 showDetails example: counters only, no per-profile rows."""
    status = BatchStatus(state="complete", batch_size=4, successful=1, failed=2, not_found=1)
    outcome = batch_outcome(BatchEnd.COMPLETE, status)
    assert resolve(outcome) == []  # Target named no row: none can be listed by line
    assert outcome.counts == {SUCCEEDED: 1, FAILED: 2, NOT_FOUND: 1, PENDING: 0}
    assert outcome.reason == (
        "Target counted 2 row(s) of this batch it failed without naming them; "
        "Target counted 1 row(s) of this batch it found no profile for without naming them"
    )


def test_named_failures_are_not_counted_twice_by_the_counters():
    status = BatchStatus(
        state="complete", successful=2, failed=2, not_found=0, profiles=[("CRM-1", "failed")]
    )
    outcome = batch_outcome(BatchEnd.COMPLETE, status)
    rows = resolve(outcome)
    assert [(line, bucket) for line, _, bucket, _ in rows] == [(2, FAILED)]
    assert outcome.counts == {SUCCEEDED: 2, FAILED: 2, NOT_FOUND: 0, PENDING: 0}
    assert "1 row(s)" in outcome.reason


def test_rows_the_counters_do_not_cover_are_pending():
    status = BatchStatus(state="complete", successful=1, failed=1, not_found=0)
    outcome = batch_outcome(BatchEnd.COMPLETE, status)
    resolve(outcome)
    assert outcome.counts == {SUCCEEDED: 1, FAILED: 1, NOT_FOUND: 0, PENDING: 2}
    assert outcome.reason.endswith("Target's counters cover 2 of the batch's 4 rows: the other 2 are pending")


def test_a_complete_status_without_counters_keeps_unnamed_rows_succeeded():
    outcome = batch_outcome(BatchEnd.COMPLETE, BatchStatus(state="complete"))
    resolve(outcome)
    assert outcome.counts == {SUCCEEDED: 4, FAILED: 0, NOT_FOUND: 0, PENDING: 0}
    assert outcome.reason is None


def test_not_found_counts_only_when_the_batch_completed():
    outcome = batch_outcome(BatchEnd.STUCK, BatchStatus(state="stuck", not_found=2))
    resolve(outcome)
    assert outcome.counts == {SUCCEEDED: 0, FAILED: 4, NOT_FOUND: 0, PENDING: 0}


def test_the_2017_format_names_every_row_even_in_a_stuck_batch():
    status = BatchStatus(
        state="stuck",
        profiles=[("CRM-1", "success"), ("CRM 2", "error"), ("CRM-3", "pending")],
    )
    outcome = batch_outcome(BatchEnd.STUCK, status)
    rows = resolve(outcome)
    assert [(line, bucket) for line, _, bucket, _ in rows] == [(3, FAILED), (5, PENDING), (6, FAILED)]
    assert outcome.counts == {SUCCEEDED: 1, FAILED: 2, NOT_FOUND: 0, PENDING: 1}


def test_rows_csv_writes_report_lines_with_the_batch_index():
    rows = [(3, "CRM%202", FAILED, "a, quoted reason"), (6, "CRM-4", PENDING, "")]
    text = b"".join(rows_csv(rows, 7)).decode()
    assert list(csv.reader(io.StringIO(text))) == [
        ["3", "CRM%202", "failed", "a, quoted reason", "7"],
        ["6", "CRM-4", "pending", "", "7"],
    ]
    assert list(rows_csv([], 1)) == []


def test_rows_csv_streams_in_chunks():
    rows = [(i, f"CRM-{i}", FAILED, "x" * 100) for i in range(2000)]
    chunks = list(rows_csv(rows, 1))
    assert len(chunks) > 1
    assert b"".join(chunks).count(b"\n") == 2000


def job(**fields):
    return {"jobId": "j", "received": 12, "accepted": 9, "rejected": 2, "skipped": 1} | fields


def test_the_account_adds_every_bucket_up():
    batches = [
        {"rows": 4, "counts": {SUCCEEDED: 2, FAILED: 1, NOT_FOUND: 1, PENDING: 0}},
        {"rows": 3, "counts": {SUCCEEDED: 1, FAILED: 0, NOT_FOUND: 0, PENDING: 2}},
        {"rows": 2},  # never ended: its rows are pending
    ]
    result = account(job(), batches)
    assert result.to_dict() == {
        "received": 12,
        "rejected": 2,
        "skipped": 1,
        "unchanged": 0,
        "succeeded": 3,
        "failed": 1,
        "not_found": 1,
        "pending": 4,
    }
    assert result.balanced and not result.clean


def test_unchanged_rows_are_accepted_rows_in_no_batch():
    # Delta sync: of 9 accepted rows, 6 were unchanged (not sent); the batch holds the other 3.
    result = account(job(unchanged=6), [{"rows": 3, "counts": {SUCCEEDED: 2, FAILED: 1}}])
    assert result.to_dict() == {
        "received": 12,
        "rejected": 2,
        "skipped": 1,
        "unchanged": 6,
        "succeeded": 2,
        "failed": 1,
        "not_found": 0,
        "pending": 0,
    }
    assert result.balanced and not result.clean
    # Unchanged rows are no error: a job whose other rows all succeeded is clean.
    assert account(job(unchanged=6, rejected=0, received=10), [{"rows": 3, "counts": {SUCCEEDED: 3}}]).clean
    # Counted unchanged and also in a batch: the rows do not add up.
    with pytest.raises(AccountingError, match="unchanged 6"):
        account(job(unchanged=6), [{"rows": 9, "counts": {SUCCEEDED: 9}}])


def test_a_clean_account_has_only_successes_and_skipped_rows():
    result = account(job(received=5, accepted=4, rejected=0), [{"rows": 4, "counts": {SUCCEEDED: 4}}])
    assert result.balanced and result.clean


@pytest.mark.parametrize(
    ("fields", "batches"),
    [
        ({}, [{"rows": 9, "counts": {SUCCEEDED: 8}}]),  # a row lost between counts and rows
        ({"accepted": 8}, [{"rows": 9, "counts": {SUCCEEDED: 9}}]),  # batches hold more than accepted
        ({"received": 13}, [{"rows": 9, "counts": {SUCCEEDED: 9}}]),  # a row never classified
    ],
)
def test_rows_that_do_not_add_up_raise(fields, batches):
    with pytest.raises(AccountingError, match="do not add up"):
        account(job(**fields), batches)
