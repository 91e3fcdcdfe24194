"""Recording how a batch ended: its non-success rows (with source lines) to S3, its counts to its record.

Bulk batches end at once (record_batch_end); single-update batches chunk by chunk (add_single_counts),
and the rows not sent when one stops end pending (end_single_rest).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from profile_sync.adobe_target.responses import BatchStatus as TargetBatchStatus
from profile_sync.model import (
    BatchEnd,
    BatchItem,
    BatchRecord,
    BatchStatus,
    JobKeys,
    Manifest,
    RowCounts,
    RowOutcome,
    zero_counts,
)
from profile_sync.outcomes import REPORT_COLUMNS, LineRuns, batch_outcome, batch_rows, resolve_rows, rows_csv
from profile_sync.ports import Clock, JobStore, ObjectStore
from profile_sync.workflow.common import iso


@dataclass(frozen=True)
class RecordPorts:
    """What recording a batch's end takes: its file and the manifest (read), its results file
    (written) and its record."""

    objects: ObjectStore
    jobs: JobStore
    now: Clock


def record_batch_end(
    ports: RecordPorts,
    item: BatchItem,
    end: BatchEnd,
    *,
    status: TargetBatchStatus | None = None,
    reason: str = "",
    polls: int | None = None,
    calls: int | None = None,
) -> RowCounts:
    """Write the batch's non-success rows (with source lines) to S3 and its counts to its record."""
    job_id, batch = item["jobId"], item["batch"]
    outcome = batch_outcome(end, status, reason)
    runs = line_runs(ports.objects, item)
    results_key = JobKeys(job_id).results(batch["batchIndex"])
    with ports.objects.open(batch["key"]) as body:
        rows = resolve_rows(outcome, batch_rows(lines(body)), runs)
        upload_lines(ports.objects, results_key, rows_csv(rows, batch["batchIndex"]))
    ports.jobs.update_batch(
        job_id,
        batch["batchIndex"],
        {
            "status": end.status,
            "counts": outcome.counts,
            "resultsKey": results_key,
            "endedAt": iso(ports.now()),
            "reason": outcome.reason,
            "polls": polls,
            "submitCalls": calls,
            "targetState": status.state if status else None,
            "targetCounts": _target_counts(status),
        },
    )
    return outcome.counts


def end_single_rest(ports: RecordPorts, item: BatchItem, cursor: int, reason: str) -> RowCounts:
    """The rows of a single-update batch from `cursor` on end pending, unsent, with the reason."""
    batch = item["batch"]
    runs = line_runs(ports.objects, item)
    with ports.objects.open(batch["key"]) as body:
        ids = [visitor_id for index, visitor_id in batch_rows(lines(body)) if index >= cursor]
    rows = [(runs.line(cursor + offset), vid, RowOutcome.PENDING, reason) for offset, vid in enumerate(ids)]
    key = JobKeys(item["jobId"]).results(batch["batchIndex"], cursor)
    upload_lines(ports.objects, key, rows_csv(rows, batch["batchIndex"]))
    counts: RowCounts = {RowOutcome.PENDING: len(rows)}
    add_single_counts(ports, item, cursor=cursor, next_cursor=batch["rows"], counts=counts, done=True)
    ports.jobs.update_batch(item["jobId"], batch["batchIndex"], {"reason": reason})
    return counts


def add_single_counts(
    ports: RecordPorts, item: BatchItem, *, cursor: int, next_cursor: int, counts: RowCounts, done: bool
) -> None:
    """Add a chunk's counts to the batch record, once: only the try that finds the cursor where
    the chunk began records it."""
    job_id, index = item["jobId"], item["batch"]["batchIndex"]
    record = ports.jobs.get_batch(job_id, index) or BatchRecord()
    if record.get("cursor", 0) != cursor:
        return  # this chunk was recorded by an earlier try
    totals = zero_counts() | (record.get("counts") or {})
    for name, value in counts.items():
        totals[name] += value
    changes: dict[str, object] = {
        "cursor": next_cursor,
        "counts": totals,
        "status": BatchStatus.COMPLETE if done else BatchStatus.SENDING,
    }
    if done:
        changes["endedAt"] = iso(ports.now())
    ports.jobs.update_batch(job_id, index, changes, expect={"cursor": cursor})


def _target_counts(status: TargetBatchStatus | None) -> dict[str, int] | None:
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


def line_runs(objects: ObjectStore, item: BatchItem) -> LineRuns:
    """The batch's rows -> source lines, from the job's manifest."""
    manifest: Manifest = objects.get_json(item.get("manifestKey") or JobKeys(item["jobId"]).manifest)
    index = item["batch"]["batchIndex"]
    entry = next(b for b in manifest["batches"] if b["batchIndex"] == index)
    return LineRuns([(run[0], run[1]) for run in entry["lineRuns"]])


def lines(body: BinaryIO) -> Iterator[bytes]:
    """Lines of a streamed object, without holding it whole."""
    pending = b""
    while chunk := body.read(1 << 20):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def upload_lines(objects: ObjectStore, key: str, chunks: Iterable[bytes], header: bool = False) -> None:
    """Spool the lines to a temporary file (memory stays flat) and upload it as one CSV object."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as spool:
        if header:
            spool.write((",".join(REPORT_COLUMNS) + "\n").encode())
        for chunk in chunks:
            spool.write(chunk)
        spool.flush()
        objects.upload_file(Path(spool.name), key, "text/csv; charset=utf-8")
