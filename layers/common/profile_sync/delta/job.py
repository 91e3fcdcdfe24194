"""Delta sync for one job: the diff at ingest, the snapshot update after the job ends.

At ingest (``diff_job``): the engine's batch files (on local disk) are diffed against the client's
snapshot; the batches are written again without the unchanged rows; the candidates, the rows'
unchanged bits and a small manifest go to the job's ``delta/`` folder for the update.

After the job (``update_from_job``): which sent rows Target confirmed is read from the batch
records and their results files (the non-success rows with their source lines), and the confirmed
rows are merged into the snapshot (``update``).
"""

from __future__ import annotations

import csv
import io
import tempfile
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from profile_sync.delta.diff import diff_batches, rebatch
from profile_sync.delta.snapshot import CONTENT_TYPE, PointerStore
from profile_sync.delta.update import confirmed_bits, update_snapshot
from profile_sync.validate import BatchInfo

SINGLE_NOT_CONFIRMED = (
    "the single update API answers success for an id without a profile and creates none: "
    "its rows are not taken as confirmed (they are sent again next time)"
)


class JobObjects(Protocol):
    def open(self, key: str) -> BinaryIO: ...
    def upload_file(self, path: Path, key: str, content_type: str) -> None: ...
    def put_json(self, key: str, document: object) -> None: ...
    def delete_keys(self, keys: list[str]) -> None: ...


class JobReader(JobObjects, Protocol):
    def get_json(self, key: str) -> Any: ...


def delta_prefix(job_prefix: str) -> str:
    return f"{job_prefix}delta/"


def diff_job(
    *,
    job_prefix: str,
    client_code: str,
    id_type: str,
    batches: list[BatchInfo],
    objects: JobObjects,
    pointers: PointerStore,
    workdir: Path,
    partitions: int,
    max_rows: int,
    max_bytes: int,
    on_batch: Callable[[BatchInfo], None] | None = None,
) -> tuple[list[BatchInfo], dict[str, Any]]:
    """Diff the job's batches against the snapshot; returns (the batches to send, the delta manifest).

    The batches to send are handed to ``on_batch`` as they are closed, like the engine's.
    """
    prefix = delta_prefix(job_prefix)
    pointer = pointers.get(client_code, id_type)
    diff = diff_batches(
        [Path(b.path) for b in batches],
        pointer=pointer,
        objects=objects,
        workdir=workdir / "delta",
        partitions=partitions,
    )
    sent = rebatch(
        batches,
        diff.changed_seqs,
        out_dir=workdir / "send",
        max_rows=max_rows,
        max_bytes=max_bytes,
        on_batch=on_batch,
    )
    candidates = {}
    for partition, path in sorted(diff.candidates.items()):
        candidates[str(partition)] = f"{prefix}candidates/part-{partition:04d}.gz"
        objects.upload_file(path, candidates[str(partition)], CONTENT_TYPE)
        path.unlink()
    unchanged_key = f"{prefix}unchanged.bin"
    bits = workdir / "unchanged.bin"
    bits.write_bytes(diff.unchanged_bits)
    objects.upload_file(bits, unchanged_key, "application/octet-stream")
    manifest = {
        "clientCode": client_code,
        "idType": diff.id_type,
        "baseVersion": diff.base_version,
        "partitions": diff.partitions,
        "names": [name.decode() for name in diff.names],
        "rows": diff.rows,
        "unchanged": diff.unchanged,
        "sent": sum(b.rows for b in sent),
        "candidates": candidates,
        "unchangedKey": unchanged_key,
    }
    objects.put_json(f"{prefix}manifest.json", manifest)
    return sent, manifest


def update_from_job(
    *,
    job: Mapping[str, Any],
    batches: list[Mapping[str, Any]],
    objects: JobReader,
    pointers: PointerStore,
    now: str = "",
    max_attempts: int = 10,
    grace_seconds: int = 86400,
) -> dict[str, object]:
    """Merge the rows of an ended delta job that Target confirmed into the client's snapshot."""
    if job.get("apiVersion") == "single":
        return {"skipped": SINGLE_NOT_CONFIRMED}
    manifest = objects.get_json(job["deltaKey"])
    runs = {
        int(entry["batchIndex"]): entry["lineRuns"]
        for entry in objects.get_json(job["manifestKey"])["batches"]
    }
    outcome: list[tuple[int, Iterable[int] | None]] = [
        (int(b["rows"]), _not_confirmed(objects, b, runs[int(b["batchIndex"])]))
        for b in sorted(batches, key=lambda b: int(b["batchIndex"]))
    ]
    with objects.open(manifest["unchangedKey"]) as body:
        unchanged = body.read()
    confirmed = confirmed_bits(unchanged, int(manifest["rows"]), outcome)
    with tempfile.TemporaryDirectory(prefix="delta-update-") as work:
        result = update_snapshot(
            client_code=manifest["clientCode"],
            id_type=manifest["idType"],
            job_id=str(job["jobId"]),
            base_version=int(manifest["baseVersion"]),
            partitions=int(manifest["partitions"]),
            names=[name.encode() for name in manifest["names"]],
            candidates={int(p): key for p, key in manifest["candidates"].items()},
            confirmed=confirmed,
            objects=objects,
            pointers=pointers,
            workdir=Path(work),
            now=now,
            max_attempts=max_attempts,
            grace_seconds=grace_seconds,
        )
    return result.to_dict()


def _not_confirmed(
    objects: JobReader, batch: Mapping[str, Any], line_runs: list[list[int]]
) -> list[int] | None:
    """Row indexes of the batch Target did not confirm (ascending); None when none is confirmed.

    A batch's rows are confirmed only when it ended complete and every row its results file does
    not list is counted as succeeded (v1 counts rows without naming them: then none is).
    """
    counts = batch.get("counts") or {}
    if str(batch.get("status", "")).lower() != "complete" or not batch.get("resultsKey"):
        return None
    listed: list[int] = []
    starts = [line for _, line in line_runs]
    with objects.open(batch["resultsKey"]) as body:
        for row in csv.reader(io.TextIOWrapper(body, encoding="utf-8", newline="")):
            line = int(row[0])
            run = bisect_right(starts, line) - 1
            listed.append(line_runs[run][0] + line - line_runs[run][1])
    if int(counts.get("succeeded", 0)) != int(batch["rows"]) - len(listed):
        return None
    return sorted(listed)
