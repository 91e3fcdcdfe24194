"""Delta sync for one job: the diff at ingest and the snapshot update from the batches' outcomes."""

from __future__ import annotations

import io
import json
from pathlib import Path

from profile_sync.delta.job import SINGLE_NOT_CONFIRMED, diff_job, update_from_job
from profile_sync.outcomes import rows_csv
from profile_sync.settings import Settings
from profile_sync.validate import validate_and_split
from tests.unit.test_delta import MemObjects, MemPointers, csv_of, people


class JobObjects(MemObjects):
    def put_json(self, key: str, document: object) -> None:
        self.data[key] = json.dumps(document).encode()

    def get_json(self, key: str):
        return json.loads(self.data[key])


def ingest(tmp: Path, objects, pointers, job_id: str, data: bytes, batch_rows: int = 40):
    work = tmp / job_id
    result = validate_and_split(io.BytesIO(data), work / "engine", Settings(batch_max_rows=batch_rows))
    sent, manifest = diff_job(
        job_prefix=f"jobs/{job_id}/",
        client_code="acme",
        id_type=result.id_column,
        batches=result.batches,
        objects=objects,
        pointers=pointers,
        workdir=work,
        partitions=8,
        max_rows=batch_rows,
        max_bytes=Settings().batch_max_bytes,
    )
    objects.put_json(f"jobs/{job_id}/delta/manifest.json", manifest)
    objects.put_json(
        f"jobs/{job_id}/manifest.json",
        {"batches": [{"batchIndex": b.index, "lineRuns": b.line_runs} for b in sent]},
    )
    return sent, manifest


def ended(objects, job_id, sent, how):
    """Batch records as the workflow leaves them; ``how(batch)`` -> (status, failed row indexes, counts)."""
    records = []
    for batch in sent:
        status, failed, counts = how(batch)
        ids = [line.split(b",", 1)[0].decode() for line in Path(batch.path).read_bytes().splitlines()[1:]]
        rows = [(batch.source_line(i), ids[i], "failed", "Target reported the update failed") for i in failed]
        key = f"jobs/{job_id}/results/batch-{batch.index:05d}.csv"
        objects.data[key] = b"".join(rows_csv(rows, batch.index))
        records.append(
            {
                "batchIndex": batch.index,
                "rows": batch.rows,
                "status": status,
                "counts": counts,
                "resultsKey": key,
            }
        )
    return records


def job_record(job_id, api="v2"):
    return {
        "jobId": job_id,
        "apiVersion": api,
        "deltaKey": f"jobs/{job_id}/delta/manifest.json",
        "manifestKey": f"jobs/{job_id}/manifest.json",
    }


def all_succeeded(batch):
    return "COMPLETE", [], {"succeeded": batch.rows, "failed": 0, "not_found": 0, "pending": 0}


def test_only_the_rows_target_confirmed_enter_the_snapshot(tmp_path):
    objects, pointers = JobObjects(), MemPointers()
    rows = people(200)
    sent, manifest = ingest(tmp_path, objects, pointers, "j1", csv_of(rows))
    assert manifest["unchanged"] == 0 and manifest["sent"] == 200 and len(sent) == 5
    update = update_from_job(
        job=job_record("j1"),
        batches=ended(objects, "j1", sent, all_succeeded),
        objects=objects,
        pointers=pointers,
    )
    assert update["confirmed"] == 200 and update["version"] == 1

    changed = {i: ("bronze", *v[1:]) for i, v in rows.items()}
    sent, manifest = ingest(tmp_path, objects, pointers, "j2", csv_of(changed))
    assert manifest["base" + "Version"] == 1 and manifest["sent"] == 200

    def how(batch):
        if batch.index == 1:  # two rows failed, named by Target
            return (
                "COMPLETE",
                [3, 7],
                {"succeeded": batch.rows - 2, "failed": 2, "not_found": 0, "pending": 0},
            )
        if batch.index == 2:  # v1: rows counted as not found without names: none confirmed
            return "COMPLETE", [], {"succeeded": batch.rows - 1, "failed": 0, "not_found": 1, "pending": 0}
        if batch.index == 3:  # stuck: nothing confirmed
            return "STUCK", list(range(batch.rows)), {"succeeded": 0, "failed": batch.rows}
        return all_succeeded(batch)

    records = ended(objects, "j2", sent, how)
    update = update_from_job(job=job_record("j2"), batches=records, objects=objects, pointers=pointers)
    assert update["confirmed"] == 200 - 2 - 40 - 40
    # The next run of the same file sends exactly the rows not confirmed.
    again, manifest = ingest(tmp_path, objects, pointers, "j3", csv_of(changed))
    expected = 2 + 40 + 40
    assert manifest["sent"] == expected and manifest["unchanged"] == 200 - expected
    failed_ids = {line.split(b",")[0] for line in Path(sent[0].path).read_bytes().splitlines()[1:][3:8:4]}
    resent = {line.split(b",")[0] for b in again for line in Path(b.path).read_bytes().splitlines()[1:]}
    assert failed_ids <= resent


def test_a_file_whose_rows_are_all_unchanged_has_no_batch(tmp_path):
    objects, pointers = JobObjects(), MemPointers()
    sent, _ = ingest(tmp_path, objects, pointers, "j1", csv_of(people(30)))
    update_from_job(
        job=job_record("j1"),
        batches=ended(objects, "j1", sent, all_succeeded),
        objects=objects,
        pointers=pointers,
    )
    sent, manifest = ingest(tmp_path, objects, pointers, "j2", csv_of(people(30)))
    assert sent == [] and manifest["unchanged"] == 30 and manifest["candidates"] == {}
    assert update_from_job(job=job_record("j2"), batches=[], objects=objects, pointers=pointers) == {
        "version": 1,
        "confirmed": 0,
        "unknown": 0,
        "attempts": 0,
        "skipped": "no confirmed rows",
    }


def test_single_update_successes_are_not_confirmations(tmp_path):
    objects, pointers = JobObjects(), MemPointers()
    sent, _ = ingest(tmp_path, objects, pointers, "j1", csv_of(people(10)))
    result = update_from_job(
        job=job_record("j1", api="single"),
        batches=ended(objects, "j1", sent, all_succeeded),
        objects=objects,
        pointers=pointers,
    )
    assert result == {"skipped": SINGLE_NOT_CONFIRMED}
    assert pointers.get("acme", "thirdPartyId") is None
