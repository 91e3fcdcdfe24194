"""The pipeline's vocabulary: its values are stored and read back, so they never drift."""

from __future__ import annotations

import json

from profile_sync import telemetry
from profile_sync.model import (
    ACCOUNT_FIELDS,
    BATCH_ROW_OUTCOMES,
    BatchEnd,
    BatchStatus,
    JobKeys,
    JobStatus,
    RejectReason,
    RowOutcome,
    TargetState,
)
from profile_sync.validate import REASONS


def test_the_values_are_the_strings_already_stored_in_records_reports_and_metrics():
    # Records and reports written before the model hold these exact strings.
    assert [s.value for s in JobStatus] == [
        "RECEIVED",
        "REJECTED",
        "QUEUED",
        "RUNNING",
        "COMPLETE",
        "COMPLETE_WITH_ERRORS",
        "FAILED",
    ]
    assert [e.value for e in BatchEnd] == [
        "complete",
        "stuck",
        "deadline",
        "vanished",
        "submit_failed",
        "status_failed",
        "maybe_accepted",
        "auth_failed",
        "not_sent",
        "step_failed",
    ]
    assert [s.value for s in TargetState] == ["complete", "incomplete", "stuck", "unknown"]
    assert BATCH_ROW_OUTCOMES == ("succeeded", "failed", "not_found", "pending")
    assert ACCOUNT_FIELDS == (
        "received",
        "rejected",
        "skipped",
        "unchanged",
        "succeeded",
        "failed",
        "not_found",
        "pending",
    )
    assert {RowOutcome.REJECTED, RowOutcome.SKIPPED, RowOutcome.UNCHANGED} | set(BATCH_ROW_OUTCOMES) == set(
        RowOutcome
    )
    # A StrEnum is its string everywhere it is written: JSON, f-strings, comparisons.
    assert (
        json.dumps({RowOutcome.NOT_FOUND: JobStatus.COMPLETE_WITH_ERRORS})
        == '{"not_found": "COMPLETE_WITH_ERRORS"}'
    )
    assert f"{BatchEnd.MAYBE_ACCEPTED}" == "maybe_accepted"


def test_every_end_is_a_batch_status_and_back():
    for end in BatchEnd:
        assert end.status == end.value.upper()
        assert end.status.end is end
    assert BatchStatus.POLLING.end is None
    assert BatchStatus.PENDING.end is None


def test_every_end_and_row_outcome_has_its_metric():
    assert set(telemetry.BATCH_END_METRICS) == set(BatchEnd)
    assert set(telemetry.ROW_METRICS) == set(BATCH_ROW_OUTCOMES)


def test_the_reject_reasons_are_validations():
    assert [r.value for r in RejectReason] == list(REASONS)


def test_the_s3_layout_of_a_job():
    keys = JobKeys("20261128T100000Z-abc")
    assert keys.prefix == "jobs/20261128T100000Z-abc/"
    assert keys.manifest == "jobs/20261128T100000Z-abc/manifest.json"
    assert keys.batch_list == "jobs/20261128T100000Z-abc/batches.json"
    assert keys.rejects == "jobs/20261128T100000Z-abc/rejects.csv"
    assert keys.batch_file("batch-00001.txt") == "jobs/20261128T100000Z-abc/batches/batch-00001.txt"
    assert keys.results(3) == "jobs/20261128T100000Z-abc/results/batch-00003.csv"
    assert keys.results(3, 1500) == "jobs/20261128T100000Z-abc/results/batch-00003-0001500.csv"
    assert keys.results(3).startswith(keys.results_prefix)
    assert keys.report_summary == "jobs/20261128T100000Z-abc/report/summary.json"
    assert keys.report_rows == "jobs/20261128T100000Z-abc/report/rows.csv"
    # Everything a person downloads sits under the job's prefix.
    assert [keys.prefix + name for name in JobKeys.REPORT_FILES] == [
        keys.report_summary,
        keys.report_rows,
        keys.rejects,
    ]
