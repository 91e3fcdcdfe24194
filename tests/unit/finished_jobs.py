"""A finished job's files (manifest, batch files, results) built by the real engine and outcome rules,
in an in-memory object store: what the re-drive builder and the landing check read."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from profile_sync.adobe_target.responses import BatchStatus
from profile_sync.job_rows import JobFiles
from profile_sync.model import BatchEnd
from profile_sync.outcomes import LineRuns, batch_outcome, batch_rows, resolve_rows, rows_csv
from profile_sync.settings import Settings
from profile_sync.validate import validate_and_split


class MemoryObjects:
    """Objects as S3 holds them; opened objects are counted so a test can see what was read."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.opened: list[str] = []

    @contextmanager
    def open(self, key: str) -> Iterator[io.BytesIO]:
        if key not in self.data:
            raise FileNotFoundError(key)
        self.opened.append(key)
        yield io.BytesIO(self.data[key])

    def get_json(self, key: str) -> object:
        return json.loads(self.data[key])

    def put_json(self, key: str, document: object) -> None:
        self.data[key] = json.dumps(document).encode()

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.data if k.startswith(prefix))


def finished_job(
    text: str,
    ends: dict[int, tuple[str, BatchStatus | None]] | None = None,
    *,
    job_id: str = "20261202T010000Z-parent000001",
    batch_max_rows: int = 3,
    api: str = "v2",
    input_mode: str = "encoded",
    status: str = "COMPLETE_WITH_ERRORS",
    objects: MemoryObjects | None = None,
) -> tuple[MemoryObjects, JobFiles]:
    """Split `text` as the ingest does; end batch N as ends[N] (default: complete, nothing failed)."""
    objects = objects or MemoryObjects()
    prefix = f"jobs/{job_id}/"
    settings = Settings(batch_max_rows=batch_max_rows, input_mode=input_mode)
    with tempfile.TemporaryDirectory() as tmp:
        result = validate_and_split(io.BytesIO(text.encode()), Path(tmp), settings)
        assert result.file_error is None, result.file_error
        records, manifest_batches = [], []
        for info in result.batches:
            key = f"{prefix}batches/{info.name}"
            objects.data[key] = Path(info.path).read_bytes()
            manifest_batches.append({"batchIndex": info.index, "lineRuns": info.line_runs})
            end, answer = (ends or {}).get(info.index, (BatchEnd.COMPLETE, BatchStatus("complete")))
            outcome = batch_outcome(end, answer)
            runs = LineRuns([tuple(run) for run in info.line_runs])
            rows = resolve_rows(outcome, batch_rows(objects.data[key].split(b"\n")[:-1]), runs)
            objects.data[f"{prefix}results/batch-{info.index:05d}.csv"] = b"".join(rows_csv(rows, info.index))
            records.append(
                {
                    "batchIndex": info.index,
                    "key": key,
                    "rows": info.rows,
                    "counts": outcome.counts,
                    "status": end.upper(),
                }
            )
    objects.put_json(f"{prefix}manifest.json", {"jobId": job_id, "batches": manifest_batches})
    job = {
        "jobId": job_id,
        "status": status,
        "clientCode": "demo",
        "apiVersion": api,
        "inputMode": input_mode,
        "sourceKey": "incoming/demo/visitors.csv",
        "manifestKey": f"{prefix}manifest.json",
        "batchCount": len(records),
        "duplicateIds": result.duplicate_ids,
    }
    return objects, JobFiles(objects, job, records)
