"""Re-drive: a new file holding exactly the rows of a finished job that did not land, to send again.

The rows come from the job's own batch files, picked by their line runs against the results files
(job_rows), so they are byte for byte what was sent: URL-encoded, in Target's format. The new file
is dropped as `mode=encoded` under a `redrive=<jobId>/` folder (see redrive_key): the ingest
validates it again, skips the client profile's column mapping (the rows are mapped already) and
links the two jobs (parentJobId on the new one, redrivenBy on the old one). A re-drive job is a
job like any other, so it can be re-driven in turn.

What can be picked:
- failed and pending rows: every one Target named or that shared its batch's end (stuck, vanished,
  deadline...). Rows Target only counted as failed or pending without naming them can't be told
  from the batch's successes: they are left out and counted in `unnamed`.
- not_found (v1 only): Target gives only a count, never the ids. So `not_found` takes every row of
  each v1 batch that counted some, except the rows listed with another outcome, and the new job
  goes through v2, which creates the missing profiles; the batch's rows that had succeeded get the
  same values again. The result's `notes` say so.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from profile_sync.job_rows import BatchWalk, JobFiles, Objects
from profile_sync.model import FINAL_JOB_STATUSES, JobStatus
from profile_sync.outcomes import FAILED, NOT_FOUND, PENDING, SUCCEEDED

CHOICES = (FAILED, PENDING, NOT_FOUND)
DEFAULT_ONLY = (FAILED, PENDING)
REDRIVE_FOLDER = "redrive="


class Sink(Protocol):
    """Where the file goes: a binary file, a temporary file, a BytesIO."""

    def write(self, data: bytes, /) -> object: ...


class RedriveRefused(ValueError):
    """The job can't be re-driven (still running, rejected, no batches): the message says why."""


@dataclass
class RedriveResult:
    rows: int = 0  # data rows written
    by_outcome: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHOICES, 0))
    batches: int = 0  # batches that gave rows
    api_version: str = "v2"
    unnamed: dict[str, int] = field(default_factory=lambda: dict.fromkeys((FAILED, PENDING), 0))
    resent_succeeded: int = 0  # not_found: rows of those v1 batches that Target counted as updated
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "byOutcome": self.by_outcome,
            "batches": self.batches,
            "apiVersion": self.api_version,
            "unnamed": self.unnamed,
            "resentSucceeded": self.resent_succeeded,
            "notes": self.notes,
        }


def parse_only(values: Iterable[str] | None) -> tuple[str, ...]:
    """`failed`, `pending`, `not_found` (also comma-separated); none given: failed and pending."""
    chosen: list[str] = []
    for value in values or ():
        for given in value.split(","):
            part = given.strip().replace("-", "_")
            if part not in CHOICES:
                raise ValueError(f"--only takes {', '.join(CHOICES)}, not {part!r}")
            if part not in chosen:
                chosen.append(part)
    return tuple(chosen) or DEFAULT_ONLY


def check_redrivable(job: Mapping[str, Any]) -> None:
    status = job.get("status")
    if status not in FINAL_JOB_STATUSES:
        raise RedriveRefused(f"job {job['jobId']} is still {status}: re-drive it once it has ended")
    if status == JobStatus.REJECTED or not job.get("batchCount"):
        raise RedriveRefused(
            f"job {job['jobId']} sent nothing to Target ({status}): fix the file and drop it again"
        )


def build_redrive_file(files: JobFiles, only: Iterable[str], out: Sink) -> RedriveResult:
    """Write the header and the chosen rows (as sent) to `out`; say what was and wasn't taken."""
    chosen = set(only)
    if not chosen <= set(CHOICES):
        raise ValueError(f"only takes {', '.join(CHOICES)}")
    job = files.job
    check_redrivable(job)
    result = RedriveResult(api_version="v2" if NOT_FOUND in chosen else str(job.get("apiVersion") or "v2"))
    header_written = False
    not_found_batches = 0
    for batch in files.batches:
        counts = batch.get("counts") or {}
        whole = NOT_FOUND in chosen and int(counts.get(NOT_FOUND, 0)) > 0
        wanted = {o for o in chosen if o != NOT_FOUND and int(counts.get(o, 0)) > 0}
        if not whole and not wanted:
            continue  # nothing of this batch is chosen: don't read it
        if not header_written:
            header, _ = files.header(batch)
            out.write(header.encode("utf-8") + b"\n")
            header_written = True
        walk = BatchWalk(batch)
        taken = whole_taken = 0
        for row in files.walk(batch, walk):
            if row.outcome in wanted:
                result.by_outcome[row.outcome] += 1
            elif whole and row.outcome in (SUCCEEDED, NOT_FOUND):
                whole_taken += 1  # v1 never names its not-found rows: every row not listed otherwise
            else:
                continue
            out.write(row.raw + b"\n")
            taken += 1
        if whole:
            not_found_batches += 1
            not_found = min(int(counts.get(NOT_FOUND, 0)), whole_taken)
            result.by_outcome[NOT_FOUND] += not_found
            result.resent_succeeded += whole_taken - not_found
        for outcome in (FAILED, PENDING):
            if outcome in wanted:
                result.unnamed[outcome] += walk.unnamed[outcome]
        result.rows += taken
        result.batches += 1 if taken else 0
    if not_found_batches:
        counted = result.by_outcome[NOT_FOUND]
        result.notes.append(
            f"v1 names no not-found rows: the {counted + result.resent_succeeded:,} rows of "
            f"{not_found_batches} v1 batch(es) that counted {counted:,} not found are all sent again, "
            f"through v2 (which creates missing profiles); {result.resent_succeeded:,} of them had "
            "been updated and get the same values again"
        )
    elif NOT_FOUND in chosen:
        result.notes.append("no batch of this job counted not-found rows (only v1 batches do)")
    for unnamed, n in result.unnamed.items():
        if n:
            result.notes.append(
                f"{n:,} {unnamed} row(s) were counted by Target without being named: they can't be "
                "told from the batch's other rows and are not in the file"
            )
    return result


def redrive_key(job: Mapping[str, Any], only: Iterable[str], api_version: str) -> str:
    """incoming/<client>/redrive=<jobId>/api=<v>/mode=encoded/[delta=on/]<source name>.redrive-<only>.csv.

    A delta sync job's re-drive is one too (delta=on/, whatever decided it for the first job): its
    rows are diffed against the snapshot like any drop's (a row another job has confirmed since with
    the same values is unchanged, not sent), and the rows it confirms enter the snapshot.
    """
    name = posixpath.basename(str(job.get("sourceKey") or "file.csv"))
    for suffix in (".gz", ".csv", ".txt"):
        name = name[: -len(suffix)] if name.lower().endswith(suffix) else name
    stem = name.split(".redrive-", 1)[0]  # a re-drive of a re-drive keeps one suffix
    return (
        f"incoming/{job['clientCode']}/{REDRIVE_FOLDER}{job['jobId']}/api={api_version}/mode=encoded/"
        + ("delta=on/" if job.get("delta") == "on" else "")
        + f"{stem}.redrive-{'-'.join(only)}.csv"
    )


# ------------------------------------------------------------------ automatic re-drive (finalize)
class AutoObjects(Objects, Protocol):
    def upload_file(self, path: Path, key: str, content_type: str) -> None: ...


class AutoJobs(Protocol):
    def update_job(
        self, job_id: str, changes: Mapping[str, Any], *, expect: Mapping[str, Any] | None = None
    ) -> bool: ...


def auto_redrive_pending(
    objects: AutoObjects, jobs: AutoJobs, job: Mapping[str, Any], batches: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """REDRIVE_PENDING_AUTO: drop one re-drive file of a finished job's pending rows; what was done.

    `job` carries its final status and counts (finalize calls this before it writes them). None when
    there is nothing to do: no pending rows, a FAILED job (fix what failed first), or a job that is
    itself an automatic re-drive (`autoRedriveOf`, set by the ingest): so it happens once per chain, not
    in a loop. The ingest of the file starts the new job and links the two (redrivenBy, parentJobId).

    At most once per job: autoRedriveKey is set by a conditional write before the upload, so a retried
    finalize finds it and drops nothing (a crash between the two leaves the key recorded and no file:
    the summary says so; `profile-sync redrive JOB --only pending` sends them). Never raises: an error
    is returned, and the job keeps its status.
    """
    if (
        job.get("status") != JobStatus.COMPLETE_WITH_ERRORS
        or not int(job.get("pending") or 0)
        or job.get("autoRedriveOf")
    ):
        return None
    job_id = str(job["jobId"])
    if job.get("autoRedriveKey"):
        return {"key": job["autoRedriveKey"], "note": "dropped by an earlier try of this step"}
    by_hand = f"profile-sync redrive {job_id} --only pending"
    try:
        with tempfile.NamedTemporaryFile(suffix=".csv") as spool:
            result = build_redrive_file(JobFiles(objects, job, batches), (PENDING,), spool)
            if not result.rows:  # Target counted them without names: nothing can be listed
                return {"rows": 0, "note": "; ".join(result.notes) or "no pending row can be listed"}
            spool.flush()
            key = redrive_key(job, (PENDING,), result.api_version)
            if not jobs.update_job(job_id, {"autoRedriveKey": key}, expect={"autoRedriveKey": ""}):
                return {"key": key, "note": "dropped by an earlier try of this step"}
            try:
                objects.upload_file(Path(spool.name), key, "text/csv; charset=utf-8")
            except Exception:
                jobs.update_job(job_id, {"autoRedriveKey": ""})
                raise
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}", "next": f"re-drive by hand: {by_hand}"}
    return {"key": key, "rows": result.rows, "batches": result.batches, "notes": result.notes}
