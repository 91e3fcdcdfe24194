"""profile-sync redrive against a deployed stack, the stack in moto: the job's files read from S3."""

from __future__ import annotations

import threading
import time

import boto3
import pytest

from profile_sync.aws.jobs import DynamoJobStore
from profile_sync.ingest import parse_drop_key
from profile_sync.settings import Settings
from profile_sync_local.cli import main
from profile_sync_local.deployed import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK
from profile_sync_local.stack import table_definition
from tests.unit.finished_jobs import finished_job
from tests.unit.test_redrive import ENDS, SOURCE

REGION = "us-east-1"
BUCKET = "drop-bucket"
TABLE = "jobs-table"
JOB = "20261202T010000Z-parent000001"


@pytest.fixture
def store(aws):
    """A finished job (failed, stuck and vanished batches) with its files in the bucket."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    boto3.client("dynamodb", region_name=REGION).create_table(**table_definition("JobsTable", TABLE))
    jobs = DynamoJobStore(TABLE, resource=boto3.resource("dynamodb", region_name=REGION))
    objects, files = finished_job(SOURCE, ENDS, job_id=JOB)
    for key, body in objects.data.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    jobs.create_job({"jobId": JOB, "createdAt": "2026-12-02T01:00:00+00:00", "sourceBucket": BUCKET})
    jobs.update_job(JOB, {k: v for k, v in files.job.items() if k != "jobId"})
    jobs.put_batches(JOB, [{k: v for k, v in b.items() if k != "counts"} for b in files.batches])
    for batch in files.batches:
        jobs.update_batch(JOB, batch["batchIndex"], {"counts": batch["counts"]})
    return jobs


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["redrive", *argv, "--bucket", BUCKET, "--table", TABLE])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def dropped() -> dict[str, bytes]:
    s3 = boto3.client("s3", region_name=REGION)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="incoming/").get("Contents", [])]
    return {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}


def test_the_failed_and_pending_rows_are_dropped_where_the_ingest_links_them(store, capsys):
    code, out, err = run(capsys, JOB)
    assert (code, err) == (EXIT_OK, "")
    [(key, body)] = dropped().items()
    assert key == f"incoming/demo/redrive={JOB}/api=v2/mode=encoded/visitors.redrive-failed-pending.csv"
    assert body.decode().splitlines() == [
        "thirdPartyId,tier,city",
        "CRM-2,silver,M%C3%BCnchen",
        "CRM-4,,Paris",
        "CRM-5,bronze,Rome",
        "CRM-6,gold,Oslo",
        "CRM-7,gold,Lima",
        "CRM-8,gold,Kyiv",
        "CRM-9,gold,Nice",
    ]
    assert "7 rows (failed 4, pending 3) from 3 batch(es), through v2" in out
    assert f"profile-sync status {JOB}" in out
    options = parse_drop_key(key, Settings())
    assert (options.parent_job_id, options.input_mode, options.client_code) == (JOB, "encoded", "demo")


def test_dry_run_drops_nothing(store, capsys):
    code, out, _ = run(capsys, JOB, "--only", "pending", "--dry-run")
    assert code == EXIT_OK and "would drop 3 rows (pending 3)" in out
    assert dropped() == {}


def test_wait_prints_the_new_job_once_the_ingest_linked_it(store, capsys):
    def ingest_links() -> None:  # as the stack's ingest does once the file is there
        while not dropped():
            time.sleep(0.05)
        store.update_job(JOB, {"redrivenBy": ["20261202T020000Z-child0000001"]})

    ingest = threading.Thread(target=ingest_links)
    ingest.start()
    code, out, _ = run(capsys, JOB, "--only", "failed", "--wait", "30")
    ingest.join()
    assert code == EXIT_OK
    assert "new job 20261202T020000Z-child0000001 (parentJobId " in out


def test_nothing_to_redrive_says_so(store, capsys):
    code, out, _ = run(capsys, JOB, "--only", "not_found")
    assert code == EXIT_OK
    assert "no batch of this job counted not-found rows" in out and "nothing to re-drive" in out
    assert dropped() == {}


def test_a_running_job_an_unknown_job_and_a_bad_choice(store, capsys):
    store.update_job(JOB, {"status": "RUNNING"})
    code, _, err = run(capsys, JOB)
    assert code == EXIT_ERROR and "still RUNNING" in err
    code, _, err = run(capsys, "20990101T000000Z-000000000000")
    assert code == EXIT_NOT_FOUND and "not found" in err
    code, _, err = run(capsys, JOB, "--only", "succeeded")
    assert code == EXIT_ERROR and "--only takes" in err
    assert dropped() == {}
