"""What only shows over HTTP: botocore's real streaming bodies (urllib3), as real S3 answers.

A StreamingBody used in `with` hands out its raw urllib3 stream, which closes itself at the end
of the data: a csv or TextIOWrapper reader over it then fails "I/O operation on closed file".
mock_aws's in-memory body never closes, so only a test over the moto server sees it. The objects
here are larger than one network read and than the store's read buffer.
"""

from __future__ import annotations

import csv
import io

import boto3

from profile_sync.aws.s3 import READ_BUFFER_BYTES, S3ObjectStore
from profile_sync_local.stack.aws_server import REGION

HEADER = "thirdPartyId,tier,value,city\n"


def test_an_object_reads_as_a_normal_file_to_its_end_and_after(stack):
    rows = [f"{i},{'x' * 90}\n" for i in range(40_000)]  # ~3.8 MB
    body = "".join(rows).encode()
    assert len(body) > 3 * READ_BUFFER_BYTES
    boto3.client("s3", region_name=REGION).put_object(Bucket=stack.bucket, Key="big.csv", Body=body)

    with S3ObjectStore(stack.bucket).open("big.csv") as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        assert [row[0] for row in csv.reader(text)] == [str(i) for i in range(40_000)]
        assert stream.read() == b""  # at the end: empty, not an error
    with S3ObjectStore(stack.bucket).open("big.csv") as stream:
        chunks = iter(lambda: stream.read(1 << 20), b"")
        assert b"".join(chunks) == body
    assert stream.closed


def test_finalize_reports_thousands_of_rejected_rows_read_over_http(pipeline):
    """The rejects file (~3 MB) goes through Finalize's csv reader into report/rows.csv."""
    good = "".join(f"CRM-{i:06d},gold,{i}.50,Berlin\n" for i in range(1, 6))
    bad = "".join(f"CRM/{i:06d},gold,{i}.50,{'M%C3%BCnchen%20Altstadt' * 3}\n" for i in range(30_000))
    body = (HEADER + good + bad).encode()

    run = pipeline.run(body)

    assert run.execution.status == "SUCCEEDED", run.execution.describe()
    assert run.job["status"] == "COMPLETE_WITH_ERRORS", run.job.get("reason")
    assert (run.job["rejected"], run.job["succeeded"]) == (30_000, 5)
    assert pipeline.read(run.job["rejectsKey"]).__len__() > 2 * READ_BUFFER_BYTES
    rows = pipeline.report_rows(run.job)
    assert len(rows) == 30_000
    assert {row["outcome"] for row in rows} == {"rejected"}
    assert [int(row["line"]) for row in rows] == list(range(7, 30_007))
