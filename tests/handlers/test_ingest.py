"""The ingest function under moto: events from events/, real handler, real engine."""

from __future__ import annotations

import csv
import gzip
import io
import json
import threading
from urllib.parse import quote_plus, unquote_plus

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from botocore.exceptions import ClientError

from profile_sync_local.stack.project import ROOT
from tests.conftest import REGION, AlertInbox, event_path, load_handler

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


# ------------------------------------------------------------------------------------- issue 11
def _start_fails(ingest, monkeypatch, code: str, times: int | None) -> list[int]:
    """StartExecution answers `code` (after botocore's own retries) `times` times, or always."""
    from profile_sync.aws import ports  # noqa: PLC0415 - as the handler builds it

    client = ports.ingest_ports("").workflow._sfn
    real = client.start_execution
    calls: list[int] = []

    def start_execution(**kwargs):
        calls.append(1)
        if times is None or len(calls) <= times:
            raise ClientError(
                {"Error": {"Code": code, "Message": f"{code} (injected)"}, "ResponseMetadata": {}},
                "StartExecution",
            )
        return real(**kwargs)

    monkeypatch.setattr(client, "start_execution", start_execution)
    return calls


def test_a_failed_start_leaves_the_job_received_and_the_retry_runs_the_workflow(
    stack, ingest, monkeypatch, lambda_context
):
    put(stack, "incoming/acme/visitors.csv", SAMPLE)
    event = make_event("incoming/acme/visitors.csv", len(SAMPLE))
    calls = _start_fails(ingest, monkeypatch, "ThrottlingException", times=1)

    with pytest.raises(ClientError):  # Lambda retries the event
        ingest.lambda_handler(event, lambda_context)
    job_id = make_drop_id(event)
    job = job_record(stack, job_id)
    # Validated, but not QUEUED: no execution exists yet (before: QUEUED, and a retry returned it).
    assert job["status"] == "RECEIVED"
    assert "executionId" not in job
    assert executions(stack) == []
    batch_before = read(stack, f"jobs/{job_id}/batches/batch-00001.txt")

    result = ingest.lambda_handler(event, lambda_context)  # Lambda's retry

    assert result["status"] == "QUEUED"
    assert len(calls) == 2
    [execution] = executions(stack)
    job = job_record(stack, job_id)
    assert (job["status"], job["executionId"]) == ("QUEUED", execution["executionArn"])
    assert (job["received"], job["accepted"], job["rejected"]) == (16, 10, 5)
    assert read(stack, f"jobs/{job_id}/batches/batch-00001.txt") == batch_before
    # A later duplicate of the event finds the job handled.
    assert ingest.lambda_handler(event, lambda_context)["status"] == "QUEUED"
    assert len(calls) == 2


def test_a_start_that_always_fails_ends_the_job_failed_with_a_reason_and_an_alert(
    stack, ingest, monkeypatch, lambda_context, capsys
):
    inbox = AlertInbox(stack.topic_arn)
    put(stack, "incoming/acme/visitors.csv", SAMPLE)
    event = make_event("incoming/acme/visitors.csv", len(SAMPLE))
    calls = _start_fails(ingest, monkeypatch, "ExecutionLimitExceeded", times=None)

    # The first try and Lambda's two retries (IngestRetryAttempts = 2).
    for _ in range(2):
        with pytest.raises(ClientError):
            ingest.lambda_handler(event, lambda_context)
        assert job_record(stack, make_drop_id(event))["status"] == "RECEIVED"
    capsys.readouterr()
    result = ingest.lambda_handler(event, lambda_context)

    assert result["status"] == "FAILED"
    assert '"JobsFailed"' in capsys.readouterr().out
    assert "ExecutionLimitExceeded" in result["reason"]
    assert "drop the file again" in result["reason"]
    job = job_record(stack, result["jobId"])
    assert (job["status"], job["reason"]) == ("FAILED", result["reason"])
    # The account holds: every accepted row failed, nothing was sent.
    assert (job["succeeded"], job["failed"], job["pending"]) == (0, 10, 0)
    assert job["received"] == job["rejected"] + job["skipped"] + job["failed"]
    assert executions(stack) == []
    [message] = inbox.messages()
    assert message["Subject"] == f"target-profile-sync: job {result['jobId']} FAILED"
    assert result["reason"] in message["Message"]
    # Another delivery of the event changes nothing.
    assert ingest.lambda_handler(event, lambda_context)["status"] == "FAILED"
    assert len(calls) == 3
    assert inbox.messages() == []


def test_a_start_whose_queued_write_failed_is_finished_by_the_retry(
    stack, ingest, monkeypatch, lambda_context
):
    put(stack, "incoming/acme/visitors.csv", SAMPLE)
    event = make_event("incoming/acme/visitors.csv", len(SAMPLE))
    from profile_sync.aws import ports  # noqa: PLC0415 - the job store the handler is given

    jobs = ports.ingest_ports(stack.bucket).jobs
    update = jobs.update_job
    failed: list[dict] = []

    def update_job(job_id, changes, **kwargs):
        if changes.get("status") == "QUEUED" and not failed:
            failed.append(changes)
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                "UpdateItem",
            )
        return update(job_id, changes, **kwargs)

    monkeypatch.setattr(jobs, "update_job", update_job)
    with pytest.raises(ClientError):
        ingest.lambda_handler(event, lambda_context)
    assert len(executions(stack)) == 1  # started, but the job still says RECEIVED

    result = ingest.lambda_handler(event, lambda_context)

    [execution] = executions(stack)
    assert result["status"] == "QUEUED"
    assert job_record(stack, result["jobId"])["executionId"] == execution["executionArn"]


def make_drop_id(event: dict) -> str:
    from profile_sync.ingest import Drop  # noqa: PLC0415

    detail = event["detail"]
    return Drop(
        bucket=detail["bucket"]["name"],
        key=unquote_plus(detail["object"]["key"]),
        sequencer=detail["object"]["sequencer"],
        etag=detail["object"]["etag"],
        event_time=event["time"],
    ).job_id()


def test_a_client_code_with_a_line_break_is_a_rejected_job(stack, ingest, lambda_context):
    key = "incoming/acme\n/visitors.csv"
    # S3 takes such a key (the moto server can't route it, and the ingest never reads the object).
    result = ingest.lambda_handler(make_event(key, len(SAMPLE)), lambda_context)
    assert result["status"] == "REJECTED"
    assert "'acme\\n' is not a valid Target client code" in result["reason"]
    assert executions(stack) == []


def test_raw_mode_rejects_control_characters_instead_of_sending_them(stack, ingest, lambda_context):
    key = "incoming/acme/mode=raw/nul.csv"
    body = b"pcId,a\n1\x00,x\n2,v\x00\n3,ok\n"
    put(stack, key, body)
    result = ingest.lambda_handler(make_event(key, len(body)), lambda_context)
    job = job_record(stack, result["jobId"])
    assert (job["accepted"], job["rejected"], job["reasons"]) == (1, 2, {"control_character": 2})
    assert read(stack, f"jobs/{result['jobId']}/batches/batch-00001.txt") == b"batch=pcId,a\n3,ok\n"


def test_a_header_of_60k_profile_columns_is_a_clear_file_error_not_a_failed_ingest(
    stack, ingest, lambda_context
):
    header = b"pcId," + b",".join(b"profile.attribute%05d" % i for i in range(60_000))
    body = header + b"\n1,x\n"
    put(stack, "incoming/acme/wide.csv", body)
    result = ingest.lambda_handler(make_event("incoming/acme/wide.csv", len(body)), lambda_context)
    assert result["status"] == "REJECTED"
    assert "60,000 parameter columns, over the maximum of 1,000 (HEADER_MAX_COLUMNS)" in result["reason"]


def test_without_a_column_cap_the_prefix_warning_still_fits_the_job_record(
    stack, monkeypatch, lambda_context
):
    monkeypatch.setenv("HEADER_MAX_COLUMNS", "0")
    ingest = load_handler("ingest")
    header = b"pcId," + b",".join(b"profile.attribute%05d" % i for i in range(60_000))
    body = header + b"\n1,x\n"
    put(stack, "incoming/acme/wide.csv", body)
    result = ingest.lambda_handler(make_event("incoming/acme/wide.csv", len(body)), lambda_context)
    assert result["status"] == "QUEUED"
    [warning] = job_record(stack, result["jobId"])["warnings"]
    assert "60,000 columns" in warning
    assert len(warning) < 400  # before: 1 MB, over DynamoDB's 400 KB item limit


def test_a_small_gzip_of_bad_rows_makes_a_bounded_rejects_file(stack, monkeypatch, lambda_context):
    monkeypatch.setenv("REJECTS_MAX_ROWS", "100")
    ingest = load_handler("ingest")
    line = b"1," + b"%zz" * 7_000 + b"\n"  # 21 KB, rejected: invalid_encoding
    body = gzip.compress(b"pcId,a\n" + line * 2_000 + b"2,ok\n")
    assert len(body) < 200_000  # 42 MB of bad rows
    put(stack, "incoming/acme/bad.csv.gz", body)

    result = ingest.lambda_handler(make_event("incoming/acme/bad.csv.gz", len(body)), lambda_context)

    job = job_record(stack, result["jobId"])
    assert (result["status"], job["rejected"], job["rejectedNotListed"]) == ("QUEUED", 2000, 1900)
    assert job["reasons"] == {"invalid_encoding": 2000}
    rejects = read(stack, f"jobs/{result['jobId']}/rejects.csv")
    assert len(rejects) < 100 * (4096 + 300)
    rows = list(csv.DictReader(io.StringIO(rejects.decode())))
    assert len(rows) == 100
    assert rows[0]["original"].endswith(f"…[cut: {len(line) - 1 - 4096:,} bytes]")
