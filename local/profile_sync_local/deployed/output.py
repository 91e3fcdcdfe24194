"""What the deployed commands print: the row account of a job, the jobs table, a job's status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from profile_sync.model import ACCOUNT_FIELDS, BATCH_ROW_OUTCOMES, JobStatus, RowOutcome

# The row account, in the order the README writes it: received = rejected + skipped + unchanged + the rest.
COUNTS = ACCOUNT_FIELDS


def job_counts(job: Mapping[str, Any], batches: Sequence[Mapping[str, Any]] | None) -> dict:
    """The row account: the job's own once it is final, else added up from its batches so far.

    A batch that has not ended holds its rows as pending. None where nothing is known yet
    (a file still being validated).
    """
    if "succeeded" in job:  # finalize wrote the account
        return {name: job.get(name, 0) for name in COUNTS}
    counts = {name: job.get(name) for name in ("received", "rejected", "skipped")}
    counts["unchanged"] = job.get("unchanged", 0) if job.get("received") is not None else None
    if job.get("status") == JobStatus.REJECTED:
        return counts | dict.fromkeys(BATCH_ROW_OUTCOMES, 0)  # nothing was sent
    if batches is None:
        return counts | dict.fromkeys(BATCH_ROW_OUTCOMES)
    sent = dict.fromkeys(BATCH_ROW_OUTCOMES, 0)
    for batch in batches:
        if batch.get("counts") is None:
            sent[RowOutcome.PENDING] += batch.get("rows", 0)
        else:
            for name in BATCH_ROW_OUTCOMES:
                sent[name] += batch["counts"].get(name, 0)
    return counts | sent


def job_summary(job: Mapping[str, Any], batches: Sequence[Mapping[str, Any]] | None) -> dict:
    return {
        "jobId": job["jobId"],
        "status": job.get("status"),
        "clientCode": job.get("clientCode"),
        "apiVersion": job.get("apiVersion"),
        "sourceKey": job.get("sourceKey"),
        "createdAt": job.get("createdAt"),
        "finishedAt": job.get("finishedAt"),
        **job_counts(job, batches),
        "reason": job.get("reason"),
    }


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def format_jobs(jobs: Sequence[Mapping[str, Any]]) -> str:
    header = (
        "JOB",
        "STATUS",
        "CLIENT",
        "CREATED",
        "RECEIVED",
        "SUCCEEDED",
        "FAILED",
        "REJECTED",
        "PENDING",
    )
    rows = [header] + [
        tuple(
            _cell(job[name])
            for name in (
                "jobId",
                "status",
                "clientCode",
                "createdAt",
                "received",
                "succeeded",
                "failed",
                "rejected",
                "pending",
            )
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row, job in zip(rows, [None, *jobs], strict=True):
        cells = [
            cell.rjust(width) if i >= 4 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells) + "  " + ("SOURCE" if job is None else _cell(job["sourceKey"])))
    return "\n".join(lines)


def batch_progress(batch: Mapping[str, Any]) -> dict:
    return {
        "batchIndex": batch["batchIndex"],
        "status": batch.get("status"),
        "rows": batch.get("rows"),
        "polls": batch.get("polls"),
        "counts": batch.get("counts"),
        "submittedAt": batch.get("submittedAt"),
        "endedAt": batch.get("endedAt"),
        "reason": batch.get("reason"),
    }


def account_line(counts: dict) -> str:
    rest = " + ".join(f"{name} {_cell(counts[name])}" for name in COUNTS[1:])
    return f"received {_cell(counts['received'])} = {rest}"


def landing_line(check: Mapping[str, Any]) -> str:
    """The landing check on one line: where it is, or what the sample showed."""
    if check.get("status") in ("WAITING", "READING"):
        return f"checking: {check.get('sampled', '?')} sampled profiles, read {check.get('round', 0)} done"
    if not check.get("sampled"):
        return str(check.get("reason") or "not checked")
    line = (
        f"{check.get('verified', 0)} of {check['sampled']} sampled profiles verified, "
        f"{check.get('mismatched', 0)} mismatched, {check.get('notVisible', 0)} not yet visible, "
        f"{check.get('unchecked', 0)} unchecked ({check.get('rounds', 0)} read(s))"
    )
    return line + (f": {check['reason']}" if check.get("reason") else "")


def format_status(job: Mapping[str, Any], batches: Sequence[Mapping[str, Any]]) -> str:
    counts = job_counts(job, batches)
    lines = [
        f"job {job['jobId']}  {job.get('status')}",
        f"  source   s3://{job.get('sourceBucket')}/{job.get('sourceKey')}",
        f"  client   {_cell(job.get('clientCode'))}  api {_cell(job.get('apiVersion'))}  "
        f"mode {_cell(job.get('inputMode'))}",
        f"  created  {job.get('createdAt')}"
        + (f"  finished {job['finishedAt']}" if job.get("finishedAt") else ""),
        f"  rows     {account_line(counts)}",
    ]
    if job.get("reason"):
        lines.append(f"  reason   {job['reason']}")
    if job.get("parentJobId"):
        lines.append(f"  re-drive of job {job['parentJobId']}")
    if job.get("redrivenBy"):
        lines.append(f"  re-driven by {', '.join(job['redrivenBy'])}")
    if job.get("landingCheck"):
        lines.append(f"  landed   {landing_line(job['landingCheck'])}")
    if batches:
        lines.append(f"  batches  {len(batches)}")
        header = (
            "#",
            "STATUS",
            "ROWS",
            "POLLS",
            *(name.upper() for name in BATCH_ROW_OUTCOMES),
        )
        table = [header]
        for batch in batches:
            done = batch.get("counts") or {}
            table.append(
                (
                    str(batch["batchIndex"]),
                    _cell(batch.get("status")),
                    _cell(batch.get("rows")),
                    _cell(batch.get("polls")),
                    *(_cell(done.get(name)) for name in BATCH_ROW_OUTCOMES),
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row, listed in zip(table, [None, *batches], strict=True):
            cells = [
                cell.ljust(width) if i == 1 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            reason = "REASON" if listed is None else (listed.get("reason") or "")
            lines.append(("    " + "  ".join(cells) + "  " + reason).rstrip())
    return "\n".join(lines)
