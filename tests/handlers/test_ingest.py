"""The ingest function under moto: events from events/, real handler, real engine."""

from __future__ import annotations

import csv
import gzip
import io
import json
import threading
from urllib.parse import quote_plus

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

from profile_sync_local.local_stack import ROOT
from tests.conftest import REGION, event_path, load_handler

SAMPLE = (ROOT / "local" / "samples" / "visitors.csv").read_bytes()


def make_event(
    key: str, size: int, *, sequencer: str = "0065F1C2A3B4C5D6E7", name: str = "ingest_object_created.json"
):
    """The file from events/ with the object swapped; the key encoded the way S3 encodes it in events."""
    event = json.loads(event_path(name).read_text())
    event["detail"]["object"].update(key=quote_plus(key, safe="/"), size=size, sequencer=sequencer)
    return event


def s3():
    return boto3.client("s3", region_name=REGION)


def sfn():
    return boto3.client("stepfunctions", region_name=REGION)


def put(stack, key: str, body: bytes) -> None:
    s3().put_object(Bucket=stack.bucket, Key=key, Body=body)


def job_record(stack, job_id: str) -> dict:
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.jobs_table)
    return table.get_item(Key={"pk": f"JOB#{job_id}", "sk": "JOB"})["Item"]


def executions(stack) -> list[dict]:
    return sfn().list_executions(stateMachineArn=stack.state_machine_arn)["executions"]


def read(stack, key: str) -> bytes:
    return s3().get_object(Bucket=stack.bucket, Key=key)["Body"].read()


@pytest.fixture
def ingest(stack):
    return load_handler("ingest")


def test_sample_event_file_becomes_a_queued_job_with_batches_rejects_and_an_execution(
    stack, ingest, lambda_context
):
    event = json.loads(event_path("ingest_object_created.json").read_text())
    put(stack, event["detail"]["object"]["key"], SAMPLE)

    result = ingest.lambda_handler(event, lambda_context)

    assert result["status"] == "QUEUED"
    job = job_record(stack, result["jobId"])
    assert job["clientCode"] == "acme"
    assert job["apiVersion"] == "v2"
    assert job["inputMode"] == "encoded"
    assert job["received"] == job["accepted"] + job["rejected"] + job["skipped"]
    assert (job["received"], job["accepted"], job["rejected"], job["skipped"]) == (16, 10, 5, 1)
    assert job["duplicateIds"] == 1
    assert job["batchCount"] == 1

    prefix = f"jobs/{result['jobId']}/"
    batch = read(stack, f"{prefix}batches/batch-00001.txt").decode()
    assert batch.startswith(
        "batch=thirdPartyId,loyaltyTier,lifetimeValue,favoriteCategory,lastStore,emailOptIn\n"
    )
    assert batch.count("\n") == 1 + 10

    rejects = list(csv.DictReader(io.StringIO(read(stack, f"{prefix}rejects.csv").decode())))
    assert [(r["line"], r["reason"]) for r in rejects] == [
        ("8", "empty_id"),
        ("9", "too_many_fields"),
        ("10", "invalid_encoding"),
        ("12", "invalid_third_party_id"),
        ("13", "invalid_encoding"),
    ]

    manifest = json.loads(read(stack, f"{prefix}manifest.json"))
    assert manifest["counts"]["accepted"] == 10
    assert manifest["batches"][0]["key"] == f"{prefix}batches/batch-00001.txt"
    pointers = json.loads(read(stack, f"{prefix}batches.json"))
    assert pointers == [
        {
            "jobId": result["jobId"],
            "batchIndex": 1,
            "key": f"{prefix}batches/batch-00001.txt",
            "rows": 10,
            "bytes": len(batch.encode()),
        }
    ]

    [execution] = executions(stack)
    assert execution["name"] == result["jobId"]
    started = json.loads(sfn().describe_execution(executionArn=execution["executionArn"])["input"])
    assert started["batchesKey"] == f"{prefix}batches.json"
    assert started["clientCode"] == "acme"
    assert job["executionId"] == execution["executionArn"]


def test_the_same_event_twice_hours_apart_makes_one_job_and_one_execution(stack, ingest, lambda_context):
    put(stack, "incoming/acme/visitors.csv", SAMPLE)
    event = make_event("incoming/acme/visitors.csv", len(SAMPLE))

    first = ingest.lambda_handler(event, lambda_context)
    second = ingest.lambda_handler(event, lambda_context)
    # Past the idempotency window, the job record and the execution name still hold.
    boto3.resource("dynamodb", region_name=REGION).Table(stack.idempotency_table).delete_item(
        Key={"id": next(iter(_idempotency_ids(stack)))}
    )
    third = load_handler("ingest").lambda_handler(event, lambda_context)

    assert first == second
    assert third["jobId"] == first["jobId"]
    assert third["status"] == "QUEUED"
    assert len(executions(stack)) == 1


def _idempotency_ids(stack) -> list[str]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.idempotency_table)
    return [item["id"] for item in table.scan()["Items"]]


def test_the_same_event_delivered_concurrently_starts_once(stack, ingest, lambda_context):
    put(stack, "incoming/acme/visitors.csv", SAMPLE)
    event = make_event("incoming/acme/visitors.csv", len(SAMPLE))
    outcomes: list[object] = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        try:
            outcomes.append(ingest.lambda_handler(event, lambda_context))
        except IdempotencyAlreadyInProgressError as exc:  # EventBridge retries these later
            outcomes.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    results = [o for o in outcomes if isinstance(o, dict)]
    assert results, outcomes
    assert len({r["jobId"] for r in results}) == 1
    assert len(executions(stack)) == 1
    # The retry of a delivery that found the work in progress gets the same job.
    assert ingest.lambda_handler(event, lambda_context) == results[0]


def test_a_new_upload_of_the_same_key_is_a_new_job(stack, ingest, lambda_context):
    put(stack, "incoming/acme/visitors.csv", SAMPLE)
    first = ingest.lambda_handler(make_event("incoming/acme/visitors.csv", len(SAMPLE)), lambda_context)
    second = ingest.lambda_handler(
        make_event("incoming/acme/visitors.csv", len(SAMPLE), sequencer="0065F1C2A3B4C5D7AA"), lambda_context
    )
    assert first["jobId"] != second["jobId"]
    assert len(executions(stack)) == 2


def test_gzip_file_under_an_odd_key_with_per_drop_options(stack, ingest, lambda_context):
    key = "incoming/acme/api=v1/mode=raw/CRM export + München 2026.csv.gz"
    raw_csv = "pcId,city,note\n1001,München,VIP client\n1002,Köln,\n".encode()
    body = gzip.compress(raw_csv)
    put(stack, key, body)
    event = json.loads(event_path("ingest_object_created_gzip_odd_key.json").read_text())
    event["detail"]["object"]["size"] = len(body)

    result = ingest.lambda_handler(event, lambda_context)

    assert result["status"] == "QUEUED"
    job = job_record(stack, result["jobId"])
    assert job["sourceKey"] == key
    assert (job["apiVersion"], job["inputMode"]) == ("v1", "raw")
    batch = read(stack, f"jobs/{result['jobId']}/batches/batch-00001.txt").decode()
    assert batch == "batch=pcId,city,note\n1001,M%C3%BCnchen,VIP%20client\n1002,K%C3%B6ln,\n"
    started = json.loads(sfn().describe_execution(executionArn=job["executionId"])["input"])
    assert started["apiVersion"] == "v1"


@pytest.mark.parametrize(
    ("key", "body", "reason_part"),
    [
        ("incoming/acme/empty.csv", b"", "header"),
        ("incoming/acme/ecid.csv", b"ECID,tier\n123,gold\n", "pcId or thirdPartyId"),
        ("incoming/acme/dup.csv", b"pcId,a,a\n1,x,y\n", "more than once"),
        ("incoming/acme/broken.csv.gz", b"not gzip at all", "gzip"),
        ("incoming/visitors.csv", b"pcId,a\n1,x\n", "client"),
        ("incoming/acme/api=v3/visitors.csv", b"pcId,a\n1,x\n", "api"),
    ],
)
def test_a_file_that_fails_as_a_whole_ends_as_a_rejected_job(
    stack, ingest, lambda_context, key, body, reason_part
):
    put(stack, key, body)
    result = ingest.lambda_handler(make_event(key, len(body)), lambda_context)

    assert result["status"] == "REJECTED"
    assert reason_part.lower() in result["reason"].lower()
    job = job_record(stack, result["jobId"])
    assert job["status"] == "REJECTED"
    assert job["reason"] == result["reason"]
    assert executions(stack) == []


def test_a_file_over_the_configured_maximum_is_rejected_before_reading(stack, monkeypatch, lambda_context):
    monkeypatch.setenv("FILE_MAX_BYTES", "100")
    ingest = load_handler("ingest")
    put(stack, "incoming/acme/visitors.csv", SAMPLE)

    result = ingest.lambda_handler(make_event("incoming/acme/visitors.csv", len(SAMPLE)), lambda_context)

    assert result["status"] == "REJECTED"
    assert "FILE_MAX_BYTES" in result["reason"]
    assert executions(stack) == []


def test_a_gzip_that_inflates_past_the_maximum_is_rejected(stack, monkeypatch, lambda_context):
    monkeypatch.setenv("FILE_MAX_BYTES", "4096")
    ingest = load_handler("ingest")
    body = gzip.compress(b"pcId,a\n" + b"1,x\n" * 10_000)
    assert len(body) < 4096
    put(stack, "incoming/acme/bomb.csv.gz", body)

    result = ingest.lambda_handler(make_event("incoming/acme/bomb.csv.gz", len(body)), lambda_context)

    assert result["status"] == "REJECTED"
    assert "maximum" in result["reason"]


def test_an_object_deleted_before_ingest_is_a_rejected_job(stack, ingest, lambda_context):
    result = ingest.lambda_handler(make_event("incoming/acme/gone.csv", 10), lambda_context)
    assert result["status"] == "REJECTED"
    assert "no longer exists" in result["reason"]


def test_batches_split_at_the_configured_row_limit(stack, monkeypatch, lambda_context):
    monkeypatch.setenv("BATCH_MAX_ROWS", "4")
    ingest = load_handler("ingest")
    body = b"pcId,a\n" + b"".join(b"%d,v%d\n" % (i, i) for i in range(10))
    put(stack, "incoming/acme/ten.csv", body)

    result = ingest.lambda_handler(make_event("incoming/acme/ten.csv", len(body)), lambda_context)

    assert result["batchCount"] == 3
    pointers = json.loads(read(stack, f"jobs/{result['jobId']}/batches.json"))
    assert [p["rows"] for p in pointers] == [4, 4, 2]
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.jobs_table)
    items = table.query(
        KeyConditionExpression="pk = :pk AND begins_with(sk, :b)",
        ExpressionAttributeValues={":pk": f"JOB#{result['jobId']}", ":b": "BATCH#"},
    )["Items"]
    assert [(i["sk"], i["status"], int(i["rows"])) for i in items] == [
        ("BATCH#00001", "PENDING", 4),
        ("BATCH#00002", "PENDING", 4),
        ("BATCH#00003", "PENDING", 2),
    ]


def test_logs_carry_counts_and_ids_never_profile_values(capsys, stack, lambda_context):
    # Imported here, not in a fixture: the Logger binds to the stdout in place at import.
    ingest = load_handler("ingest")
    put(stack, "incoming/acme/visitors.csv", SAMPLE)
    ingest.lambda_handler(make_event("incoming/acme/visitors.csv", len(SAMPLE)), lambda_context)

    output = capsys.readouterr().out
    assert '"correlation_id"' in output
    assert '"received": 16' in output or '"received":16' in output
    for value in ("M%C3%BCnchen", "running%20shoes", "1843.20", "CRM-100001", "Berlin"):
        assert value not in output


def test_batches_never_exceed_a_whole_day_of_quota(stack, monkeypatch, lambda_context):
    monkeypatch.setenv("DAILY_ROW_QUOTA", "3")
    ingest = load_handler("ingest")
    body = b"pcId,a\n" + b"".join(b"%d,v%d\n" % (i, i) for i in range(7))
    put(stack, "incoming/acme/seven.csv", body)

    result = ingest.lambda_handler(make_event("incoming/acme/seven.csv", len(body)), lambda_context)

    pointers = json.loads(read(stack, f"jobs/{result['jobId']}/batches.json"))
    assert [p["rows"] for p in pointers] == [3, 3, 1]
