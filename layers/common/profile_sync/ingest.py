"""From a dropped object to a job: key parsing, job ids, and the ingest flow over ports.

The flow reads the object once through the streaming engine, stores each batch file as soon as
it is closed, writes the rejects and the manifest, records the job and starts the workflow. The job
is QUEUED only once its execution exists: a try whose start failed leaves it RECEIVED (validated),
the next try starts it, and the last try (Settings.ingest_retry_attempts) ends it FAILED.
Storage, job records and the workflow are ports (profile_sync.ports, IngestPorts) so this module
has no AWS in it; profile_sync.aws holds the implementations.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from profile_sync import clock
from profile_sync.client_profiles import ClientProfile, ProfileInvalid, ProfileStore, validate_with_profile
from profile_sync.delta.job import delta_prefix, diff_job
from profile_sync.delta.snapshot import PointerStore
from profile_sync.model import (
    ApiVersion,
    BatchPointer,
    JobKeys,
    JobRecord,
    JobStatus,
    Manifest,
    WorkflowInput,
)
from profile_sync.ports import JobStore, Notifier, ObjectStore, Workflow
from profile_sync.settings import API_VERSIONS, DELTA_MODES, INPUT_MODES, Settings
from profile_sync.validate import BatchInfo, ValidationResult
from profile_sync.validate.engine import ByteStream

INCOMING_PREFIX = "incoming/"
# Target client codes are short lower-case names; allow what is safe in keys and execution names.
# \Z, not $: "$" also matches before a final line break ("acme\n" passed, then broke a URL).
CLIENT_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}\Z")
# A job id in a `redrive=<jobId>/` folder (Drop.job_id's shape, a little wider).
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")


class DropRejected(Exception):
    """The dropped object can't become a job at all (bad key, too big, unreadable, bad header)."""


@dataclass(frozen=True)
class Drop:
    """An object created under incoming/, as the S3 event tells it (key already decoded)."""

    bucket: str
    key: str
    size: int | None = None
    sequencer: str = ""  # S3's per-event ordering token: the same event delivered twice shares it
    etag: str = ""
    event_time: str = ""  # ISO-8601, as in the event

    def job_id(self) -> str:
        """Deterministic: the same event gives the same job (and execution name), a new upload a new one."""
        token = self.sequencer or self.etag
        digest = hashlib.sha256(f"{self.bucket}\0{self.key}\0{token}".encode()).hexdigest()[:12]
        stamp = _parse_time(self.event_time).strftime("%Y%m%dT%H%M%SZ")
        return f"{stamp}-{digest}"


@dataclass(frozen=True)
class DropOptions:
    client_code: str
    api_version: ApiVersion
    input_mode: str
    file_name: str
    compressed: bool
    delta: str = "off"  # "on": rows whose values Target already confirmed are not sent (profile_sync.delta)
    parent_job_id: str = ""  # a re-drive (profile_sync.redrive) of this job


def parse_drop_key(key: str, settings: Settings) -> DropOptions:
    """`incoming/<clientCode>/[redrive=<jobId>/][api=v1/][mode=raw/][delta=on/]<file>.csv[.gz]`.

    The optional `api=`, `mode=` and `delta=` folders choose the Target API, the input mode and
    delta sync for this drop; without them the stack's defaults (or the client profile's) apply.
    `redrive=<jobId>` marks a re-drive file of that job (profile_sync.redrive): rows already in
    Target's format, linked to the job.
    """
    if not key.startswith(INCOMING_PREFIX):
        raise DropRejected(f"{key}: not under {INCOMING_PREFIX}")
    parts = key[len(INCOMING_PREFIX) :].split("/")
    if len(parts) < 2 or not parts[-1]:
        raise DropRejected(f"{key}: expected {INCOMING_PREFIX}<clientCode>/<file>.csv")
    client_code, *options, file_name = parts
    if not CLIENT_CODE.fullmatch(client_code):
        raise DropRejected(
            f"{key}: {client_code!r} is not a valid Target client code (letters, digits, - and _)"
        )
    chosen = {"api": settings.api_version, "mode": settings.input_mode, "delta": settings.delta}
    allowed = {"api": API_VERSIONS, "mode": INPUT_MODES, "delta": DELTA_MODES}
    parent = ""
    for option in options:
        name, sep, value = option.partition("=")
        if name == "redrive" and sep:
            if not JOB_ID.fullmatch(value):
                raise DropRejected(f"{key}: {option!r}: not a job id")
            parent = value
            continue
        if not sep or name not in allowed:
            raise DropRejected(
                f"{key}: unknown folder {option!r}; use api=v2|v1|single, mode=encoded|raw or delta=on|off"
            )
        if value not in allowed[name]:
            raise DropRejected(f"{key}: {option!r}: {name} must be one of {', '.join(allowed[name])}")
        chosen[name] = value
    return DropOptions(
        client_code=client_code,
        api_version=cast(ApiVersion, chosen["api"]),  # one of API_VERSIONS, checked above
        input_mode=chosen["mode"],
        file_name=file_name,
        compressed=file_name.lower().endswith(".gz"),
        delta=chosen["delta"],
        parent_job_id=parent,
    )


# ------------------------------------------------------------------------------------- ports
@dataclass(frozen=True)
class IngestPorts:
    """What ingest takes: the drop's bucket, the job records, the workflow it starts, a person to
    tell, and the client profiles (None: there are none, the stack's settings apply)."""

    settings: Settings
    objects: ObjectStore
    jobs: JobStore
    workflow: Workflow
    notifier: Notifier | None = None
    profiles: ProfileStore | None = None
    # Delta sync's snapshot pointers (profile_sync.delta); None: this stack keeps no snapshots.
    snapshots: PointerStore | None = None


class FileTooLarge(Exception):
    pass


class CappedReader:
    """Counts what the engine reads and stops past the configured maximum (gzip bombs too)."""

    def __init__(self, raw: ByteStream, limit: int) -> None:
        self._raw, self._limit, self.bytes_read = raw, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.bytes_read += len(data)
        if self._limit and self.bytes_read > self._limit:
            raise FileTooLarge(f"larger than the configured maximum of {self._limit:,} bytes")
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


# ------------------------------------------------------------------------------------- flow
def ingest_drop(
    drop: Drop,
    ports: IngestPorts,
    *,
    now: Callable[[], datetime] = lambda: datetime.fromtimestamp(clock.now(), UTC),
    workdir: Path | None = None,
) -> JobRecord:
    """Validate and split one drop into a job; returns the job record as stored.

    ``profiles``: the client's profile (if any) maps the file and sets the drop's defaults; the
    job records the profile version it used. ``snapshots``: the delta snapshots' pointers, for a
    drop with delta sync on (its rows whose values Target already confirmed are not sent).

    Safe to repeat: a job that got past validation is returned as it is; one that stopped midway
    is done again with the same keys, and the workflow start is idempotent by name.
    """
    objects, jobs, workflow, notifier = ports.objects, ports.jobs, ports.workflow, ports.notifier
    settings, profiles, snapshots = ports.settings, ports.profiles, ports.snapshots
    job_id = drop.job_id()
    stamp = now().isoformat(timespec="seconds")
    job: JobRecord = {
        "jobId": job_id,
        "status": JobStatus.RECEIVED,
        "sourceBucket": drop.bucket,
        "sourceKey": drop.key,
        "sourceSize": drop.size,
        "createdAt": stamp,
        "updatedAt": stamp,
    }
    if not jobs.create_job(job):
        existing = jobs.get_job(job_id) or job
        if existing.get("status") == JobStatus.RECEIVED and existing.get("batchesKey"):
            # Validated by an earlier try whose workflow start failed: only the start is left.
            return _start(
                existing, workflow=workflow, jobs=jobs, settings=settings, now=now, notifier=notifier
            )
        if existing.get("status") != JobStatus.RECEIVED and (
            existing.get("executionId") or existing.get("status") != JobStatus.QUEUED
        ):
            return existing  # a duplicate event: this job has been handled
    try:
        options = parse_drop_key(drop.key, settings)
        profile = _profile(profiles, options.client_code, drop.key)
        if profile is not None:
            job["profileVersion"] = profile.version
            # The key's api= and mode= folders still win over the profile.
            settings = profile.settings(settings)
            options = parse_drop_key(drop.key, settings)
        job.update(
            {
                "clientCode": options.client_code,
                "apiVersion": options.api_version,
                "inputMode": options.input_mode,
            }
        )
        if options.delta == "on":
            job["delta"] = "on"
        if options.parent_job_id:
            job["parentJobId"] = options.parent_job_id
            parent = _link_parent(jobs, options.parent_job_id, job_id)
            if parent is not None and parent.get("autoRedriveKey") == drop.key:
                job["autoRedriveOf"] = options.parent_job_id  # finalize's own drop: it never re-drives again
            # A re-drive file holds rows as they were sent: the profile's settings apply, its
            # column mapping (done for the first job) must not run again.
            profile = None
        if settings.file_max_bytes and drop.size and drop.size > settings.file_max_bytes:
            raise DropRejected(
                f"{drop.key}: {drop.size:,} bytes is over the configured maximum of "
                f"{settings.file_max_bytes:,} bytes (FILE_MAX_BYTES)"
            )
        result, delta = _split(
            drop=drop,
            options=options,
            job_id=job_id,
            objects=objects,
            settings=_split_settings(settings, options),
            workdir=workdir,
            profile=profile,
            snapshots=snapshots,
        )
    except DropRejected as exc:
        return _reject(jobs, job, str(exc), now, notifier)
    if result.file_error:
        job.update(_counts(result))
        job["rejectsKey"] = JobKeys(job_id).rejects
        return _reject(jobs, job, result.file_error, now, notifier)

    keys = JobKeys(job_id)
    batches = [_batch_entry(job_id, b) for b in result.batches]
    manifest: Manifest = {
        "jobId": job_id,
        "clientCode": options.client_code,
        "apiVersion": options.api_version,
        "inputMode": options.input_mode,
        "source": {"bucket": drop.bucket, "key": drop.key},
        "idColumn": result.id_column,
        "columns": result.columns,
        "counts": dict(_counts(result, delta)),
        "warnings": result.warnings,
        "batches": [
            {**entry, "lineRuns": [list(run) for run in b.line_runs]}
            for entry, b in zip(batches, result.batches, strict=True)
        ],
    }
    if profile is not None:
        manifest["clientProfile"] = {"version": profile.version}
    if delta is not None:
        manifest["delta"] = _delta_summary(delta)
    objects.put_json(keys.manifest, manifest)
    # The workflow's map reads this list: pointers only, never rows.
    objects.put_json(keys.batch_list, batches)
    jobs.put_batches(job_id, batches)
    # Still RECEIVED: with batchesKey set, a later try skips straight to the start.
    job.update(_counts(result, delta))
    if delta is not None:
        job["deltaKey"] = f"{delta_prefix(keys.prefix)}manifest.json"
    job.update(
        {
            "idColumn": result.id_column,
            "batchCount": len(batches),
            "manifestKey": keys.manifest,
            "batchesKey": keys.batch_list,
            "rejectsKey": keys.rejects,
            "warnings": result.warnings,
            "updatedAt": now().isoformat(timespec="seconds"),
        }
    )
    jobs.update_job(job_id, _changes(job))
    return _start(job, workflow=workflow, jobs=jobs, settings=settings, now=now, notifier=notifier)


def _link_parent(jobs: JobStore, parent_id: str, job_id: str) -> JobRecord | None:
    """The re-driven job lists its re-drives (redrivenBy, oldest first): a conditional write on a
    counter, so two re-drives of one job ingested at once both land in the list. Returns the parent."""
    parent = None
    for _ in range(5):
        parent = jobs.get_job(parent_id)
        if parent is None:
            return None  # expired or unknown: the new job still names it
        linked = list(parent.get("redrivenBy") or [])
        if job_id in linked:
            return parent
        count = int(parent.get("redriveCount") or 0)
        changes = {"redrivenBy": [*linked, job_id], "redriveCount": count + 1}
        if jobs.update_job(parent_id, changes, expect={"redriveCount": count}):
            return parent
    return parent


def _start(
    job: JobRecord,
    *,
    workflow: Workflow,
    jobs: JobStore,
    settings: Settings,
    now: Callable[[], datetime],
    notifier: Notifier | None,
) -> JobRecord:
    """Start the job's execution (idempotent by name), then mark it QUEUED.

    A failed start is raised for the invocation to be retried, except on the last try, which ends
    the job FAILED with the reason and tells a person.
    """
    job_id = job["jobId"]
    attempts = int(job.get("startAttempts") or 0) + 1
    jobs.update_job(job_id, {"startAttempts": attempts})
    job["startAttempts"] = attempts
    try:
        payload: WorkflowInput = {
            "jobId": job_id,
            "bucket": job["sourceBucket"],
            "clientCode": job["clientCode"],
            "apiVersion": job["apiVersion"],
            "batchesKey": job["batchesKey"],
            "manifestKey": job["manifestKey"],
            "batchCount": job["batchCount"],
        }
        execution = workflow.start(job_id, payload)
    except Exception as exc:
        if attempts <= settings.ingest_retry_attempts:
            raise  # Lambda tries the event again; the job stays RECEIVED, validated
        return _start_failed(jobs, job, f"{type(exc).__name__}: {_short(str(exc))}", now, notifier)
    changes: JobRecord = {
        "status": JobStatus.QUEUED,
        "executionId": execution,
        "updatedAt": now().isoformat(timespec="seconds"),
    }
    # Only from RECEIVED: an execution started by an earlier try may have moved the job on.
    if not jobs.update_job(job_id, changes, expect={"status": JobStatus.RECEIVED}):
        return jobs.get_job(job_id) or {**job, "executionId": execution}
    job.update(changes)
    return job


def _start_failed(
    jobs: JobStore, job: JobRecord, error: str, now: Callable[[], datetime], notifier: Notifier | None
) -> JobRecord:
    """No workflow could be started: nothing was sent, every accepted row failed, a person is told."""
    attempts = job["startAttempts"]
    reason = (
        f"the workflow could not be started ({attempts} tries; last error {error}); nothing was sent "
        "to Target: drop the file again (a new upload is a new job)"
    )
    stamp = now().isoformat(timespec="seconds")
    job.update(
        {
            "status": JobStatus.FAILED,
            "reason": reason,
            "succeeded": 0,
            "failed": job.get("accepted", 0),
            "not_found": 0,
            "pending": 0,
            "updatedAt": stamp,
            "finishedAt": stamp,
        }
    )
    jobs.update_job(job["jobId"], _changes(job))
    if notifier is not None:
        notifier.notify(
            f"target-profile-sync: job {job['jobId']} FAILED",
            f"Job {job['jobId']} failed before any row was sent.\n"
            f"Source: s3://{job['sourceBucket']}/{job['sourceKey']}\n"
            f"Reason: {reason}",
        )
    return job


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _split(
    *,
    drop: Drop,
    options: DropOptions,
    job_id: str,
    objects: ObjectStore,
    settings: Settings,
    workdir: Path | None,
    profile: ClientProfile | None = None,
    snapshots: PointerStore | None = None,
) -> tuple[ValidationResult, dict[str, Any] | None]:
    """Validate and store the batches; with delta sync on, only the rows that changed (and the
    delta manifest, else None)."""
    keys = JobKeys(job_id)
    delta_on = options.delta == "on"
    if delta_on and snapshots is None:
        raise DropRejected(f"{drop.key}: delta sync is on but this stack keeps no delta snapshots")
    out_dir = Path(tempfile.mkdtemp(prefix=f"{job_id}-", dir=workdir))

    def store_batch(batch: BatchInfo) -> None:
        # Upload and delete at once: the disk never holds more than one batch.
        path = Path(batch.path)
        objects.upload_file(path, keys.batch_file(path.name), "text/plain; charset=utf-8")
        path.unlink()

    try:
        try:
            body = objects.open(drop.key)
        except FileNotFoundError as exc:
            raise DropRejected(f"{drop.key}: the object no longer exists") from exc
        # The cap applies to what the engine reads: the decompressed bytes of a .gz.
        raw = gzip.GzipFile(fileobj=body, mode="rb") if options.compressed else body
        stream = CappedReader(raw, settings.file_max_bytes)
        try:
            # With delta sync the engine's batches stay on disk until they are diffed.
            result = validate_with_profile(
                stream,
                out_dir,
                settings,
                profile,
                source_name=drop.key,
                on_batch=None if delta_on else store_batch,
            )
        except FileTooLarge as exc:
            raise DropRejected(f"{drop.key}: {exc} (FILE_MAX_BYTES)") from exc
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DropRejected(f"{drop.key}: not a readable gzip file ({exc})") from exc
        objects.upload_file(out_dir / "rejects.csv", keys.rejects, "text/csv; charset=utf-8")
        delta = None
        if delta_on and result.file_error is None and result.batches and snapshots is not None:
            result.batches, delta = diff_job(
                job_prefix=keys.prefix,
                client_code=options.client_code,
                id_type=result.id_column or "",
                batches=result.batches,
                objects=objects,
                pointers=snapshots,
                workdir=out_dir,
                partitions=settings.delta_partitions,
                max_rows=settings.batch_max_rows,
                max_bytes=settings.batch_max_bytes,
                on_batch=store_batch,
            )
        return result, delta
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def _profile(profiles: ProfileStore | None, client_code: str, key: str) -> ClientProfile | None:
    if profiles is None:
        return None
    try:
        return profiles.get(client_code)
    except ProfileInvalid as exc:
        raise DropRejected(
            f"{key}: the client profile of {client_code} is invalid ({exc}); fix it with "
            "profile-sync clients set, then drop the file again"
        ) from exc


def _split_settings(settings: Settings, options: DropOptions) -> Settings:
    """The drop's input mode; and no batch larger than a whole day's quota, which could never be sent."""
    rows = settings.batch_max_rows
    if options.api_version != "single" and settings.daily_row_quota:
        rows = min(rows, settings.daily_row_quota)
    return settings.with_overrides(input_mode=options.input_mode, batch_max_rows=rows)


def _batch_entry(job_id: str, batch: BatchInfo) -> BatchPointer:
    name = Path(batch.path).name
    return {
        "jobId": job_id,
        "batchIndex": batch.index,
        "key": JobKeys(job_id).batch_file(name),
        "rows": batch.rows,
        "bytes": batch.bytes,
    }


def _counts(result: ValidationResult, delta: Mapping[str, Any] | None = None) -> JobRecord:
    return {
        "received": result.received,
        "accepted": result.accepted,
        "rejected": result.rejected,
        "skipped": result.skipped,
        # Accepted rows whose values Target already confirmed (delta sync): not in any batch.
        "unchanged": delta["unchanged"] if delta is not None else 0,
        "duplicateIds": result.duplicate_ids,
        "reasons": dict(result.reasons),
        "rejectedNotListed": result.rejected_unlisted,
    }


def _delta_summary(delta: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("baseVersion", "partitions", "rows", "unchanged", "sent")
    return {"snapshotVersion" if k == "baseVersion" else k: delta[k] for k in keys}


def _reject(
    jobs: JobStore, job: JobRecord, reason: str, now: Callable[[], datetime], notifier: Notifier | None
) -> JobRecord:
    job.update(
        {"status": JobStatus.REJECTED, "reason": reason, "updatedAt": now().isoformat(timespec="seconds")}
    )
    jobs.update_job(job["jobId"], _changes(job))
    if notifier is not None:
        notifier.notify(
            f"target-profile-sync: file rejected ({job['jobId']})",
            f"The file s3://{job['sourceBucket']}/{job['sourceKey']} was rejected as a whole; nothing was "
            f"sent to Target.\nJob: {job['jobId']}\nReason: {reason}",
        )
    return job


def _changes(job: JobRecord) -> dict[str, Any]:
    """The job record's fields to write over the created record (its id and creation time stay)."""
    return {k: v for k, v in job.items() if k not in ("jobId", "createdAt")}


def _parse_time(value: str) -> datetime:
    if value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime(1970, 1, 1, tzinfo=UTC)
