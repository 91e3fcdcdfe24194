"""Delta sync at ingest, under moto: the delta= folder, the client profile's setting, and a drop
diffed against the client's snapshot (S3 files, DynamoDB pointer)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pytest

from profile_sync.aws.delta import DynamoSnapshotPointers
from profile_sync.aws.s3 import S3ObjectStore
from profile_sync.delta import confirmed_bits, diff_batches, update_snapshot
from profile_sync.settings import Settings
from profile_sync.validate import validate_and_split
from tests.conftest import REGION
from tests.handlers.test_ingest import job_record, make_event, put, read


@pytest.fixture
def ingest(stack):
    from tests.conftest import load_handler  # noqa: PLC0415 - as test_ingest loads it

    return load_handler("ingest")


def drop(stack, ingest, lambda_context, key: str, body: bytes, sequencer: str) -> dict:
    put(stack, key, body)
    result = ingest.lambda_handler(make_event(key, len(body), sequencer=sequencer), lambda_context)
    return job_record(stack, result["jobId"])


def seed(stack, tmp_path: Path, body: bytes, client: str = "acme") -> None:
    """The snapshot a job that sent ``body`` and had every row confirmed would leave."""
    result = validate_and_split(io.BytesIO(body), tmp_path / "seed", Settings())
    objects, pointers = S3ObjectStore(stack.bucket), DynamoSnapshotPointers(stack.jobs_table)
    diff = diff_batches(
        [Path(b.path) for b in result.batches], pointer=None, objects=objects, workdir=tmp_path, partitions=8
    )
    keys = {}
    for partition, path in diff.candidates.items():
        keys[partition] = f"jobs/seed/delta/candidates/part-{partition:04d}.gz"
        objects.upload_file(path, keys[partition], "application/gzip")
    update_snapshot(
        client_code=client,
        id_type=diff.id_type,
        job_id="seed",
        base_version=0,
        partitions=8,
        names=diff.names,
        candidates=keys,
        confirmed=confirmed_bits(diff.unchanged_bits, diff.rows, [(diff.rows, [])]),
        objects=objects,
        pointers=pointers,
        workdir=tmp_path / "update",
    )


BODY = b"thirdPartyId,tier,city\n" + b"".join(b"CRM-%03d,gold,Berlin\n" % i for i in range(30))


def test_a_drop_under_delta_on_sends_only_the_rows_that_changed(stack, ingest, lambda_context, tmp_path):
    seed(stack, tmp_path, BODY)
    changed = BODY.replace(b"CRM-004,gold", b"CRM-004,silver").replace(
        b"CRM-017,gold,Berlin", b"CRM-017,gold,"
    )
    changed += b"CRM-999,gold,Berlin\nCRM-998,,\n"  # a new id; a row with nothing to send (skipped)
    job = drop(stack, ingest, lambda_context, "incoming/acme/delta=on/day2.csv", changed, "0001")
    assert job["status"] == "QUEUED" and job["delta"] == "on"
    # CRM-017 only emptied its city: no change Target can apply. CRM-004 and the new CRM-999 are sent.
    assert (job["received"], job["accepted"], job["skipped"], job["unchanged"]) == (32, 31, 1, 29)
    assert job["batchCount"] == 1
    manifest = json.loads(read(stack, job["manifestKey"]))
    (batch,) = manifest["batches"]
    body = read(stack, batch["key"]).decode().splitlines()
    assert body == ["batch=thirdPartyId,tier,city", "CRM-004,silver,Berlin", "CRM-999,gold,Berlin"]
    assert batch["rows"] == 2 and batch["lineRuns"] == [[0, 6], [1, 32]]  # source lines kept
    assert manifest["counts"]["unchanged"] == 29 and manifest["delta"]["snapshotVersion"] == 1
    delta = json.loads(read(stack, job["deltaKey"]))
    assert delta["unchanged"] == 29 and delta["sent"] == 2 and delta["baseVersion"] == 1


def test_every_row_unchanged_makes_a_job_with_no_batch(stack, ingest, lambda_context, tmp_path):
    seed(stack, tmp_path, BODY)
    job = drop(stack, ingest, lambda_context, "incoming/acme/delta=on/again.csv", BODY, "0002")
    assert job["unchanged"] == 30 and job["batchCount"] == 0 and job["status"] == "QUEUED"


def test_without_delta_on_nothing_is_diffed(stack, ingest, lambda_context, tmp_path):
    seed(stack, tmp_path, BODY)
    job = drop(stack, ingest, lambda_context, "incoming/acme/same.csv", BODY, "0003")
    assert job["unchanged"] == 0 and job["batchCount"] == 1 and "deltaKey" not in job
    job = drop(stack, ingest, lambda_context, "incoming/acme/delta=off/same.csv", BODY, "0004")
    assert job["unchanged"] == 0 and "deltaKey" not in job


def test_the_client_profile_turns_delta_on_and_the_key_still_wins(stack, ingest, lambda_context, tmp_path):
    seed(stack, tmp_path, BODY)
    stack.put_profile("acme", {"delta": "on"})
    job = drop(stack, ingest, lambda_context, "incoming/acme/profiled.csv", BODY, "0005")
    assert job["unchanged"] == 30 and job["batchCount"] == 0
    job = drop(stack, ingest, lambda_context, "incoming/acme/delta=off/profiled.csv", BODY, "0006")
    assert job["unchanged"] == 0 and job["batchCount"] == 1


def test_a_bad_delta_folder_rejects_the_drop_and_says_what_is_allowed(stack, ingest, lambda_context):
    job = drop(stack, ingest, lambda_context, "incoming/acme/delta=yes/x.csv", BODY, "0007")
    assert job["status"] == "REJECTED"
    assert "'delta=yes': delta must be one of off, on" in job["reason"]


def test_a_first_delta_drop_sends_everything_and_leaves_the_snapshot_alone(stack, ingest, lambda_context):
    job = drop(stack, ingest, lambda_context, "incoming/acme/delta=on/first.csv", BODY, "0008")
    assert job["unchanged"] == 0 and job["batchCount"] == 1
    # The snapshot changes only from rows Target confirmed, after the job.
    assert DynamoSnapshotPointers(stack.jobs_table).get("acme", "thirdPartyId") is None
    keys = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=stack.bucket, Prefix="delta/")
    assert keys.get("KeyCount", 0) == 0
