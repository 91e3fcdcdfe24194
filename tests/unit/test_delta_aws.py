"""The delta snapshot on (moto's) S3 and DynamoDB over HTTP: the conditional pointer write, and two
jobs of one client merging at the same moment."""

from __future__ import annotations

import threading
from pathlib import Path

import boto3
import pytest

from profile_sync.aws.delta import DynamoSnapshotPointers, pointer_key
from profile_sync.aws.s3 import S3ObjectStore
from profile_sync.delta import Pointer
from profile_sync_local.stack.aws_server import atomic_dynamodb_writes
from profile_sync_local.stack.project import table_definition
from tests.unit.test_delta import Client, csv_of, people

REGION = "us-east-1"
TABLE = "jobs"
BUCKET = "drops"


@pytest.fixture
def table(aws):
    boto3.client("dynamodb", region_name=REGION).create_table(**table_definition("JobsTable", TABLE))
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    with atomic_dynamodb_writes():
        yield boto3.resource("dynamodb", region_name=REGION).Table(TABLE)


def test_the_pointer_is_written_only_over_the_version_read(table):
    pointers = DynamoSnapshotPointers(TABLE)
    assert pointers.get("acme", "pcId") is None
    first = Pointer(
        version=1, partitions=4, keys={2: "delta/acme/pcId/v1/part-0002.gz"}, ids=3, applied=("j1",)
    )
    assert pointers.put("acme", "pcId", first, expect_version=0)
    assert not pointers.put("acme", "pcId", first, expect_version=0)  # created already
    assert pointers.get("acme", "pcId") == first
    second = Pointer(version=2, partitions=4, keys={}, applied=("j1", "j2"))
    assert not pointers.put("acme", "pcId", second, expect_version=5)
    assert pointers.put("acme", "pcId", second, expect_version=1)
    assert pointers.get("acme", "pcId").applied == ("j1", "j2")
    assert table.get_item(Key=pointer_key("acme", "pcId"))["Item"]["version"] == 2
    assert pointers.get("acme", "thirdPartyId") is None  # one snapshot per id type


class RacingPointers(DynamoSnapshotPointers):
    """Both jobs read the pointer before either writes it."""

    def __init__(self, table_name: str, barrier: threading.Barrier) -> None:
        super().__init__(table_name)
        self.barrier = barrier
        self.waited = False

    def get(self, client_code, id_type):
        pointer = super().get(client_code, id_type)
        if not self.waited:
            self.waited = True
            self.barrier.wait(timeout=30)
        return pointer


def test_two_jobs_of_one_client_merging_at_once_lose_nothing(table, tmp_path):
    client = Client(tmp_path, partitions=8)
    client.objects = S3ObjectStore(BUCKET)
    client.pointers = DynamoSnapshotPointers(TABLE)
    rows = people(400)
    client.run(csv_of(rows))
    ids = list(rows)
    a_rows = {i: ("a", *rows[i][1:]) for i in ids[:150]}
    b_rows = {i: ("b", *rows[i][1:]) for i in ids[150:300]}
    jobs = [client.diff(csv_of(a_rows)), client.diff(csv_of(b_rows))]
    barrier = threading.Barrier(2)
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def merge(n: int) -> None:
        local = Client(tmp_path / f"t{n}")
        local.objects, local.pointers = S3ObjectStore(BUCKET), RacingPointers(TABLE, barrier)
        try:
            results[n] = local.update(jobs[n])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=merge, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # One wrote version 2 at once; the other's write was refused and it merged again on version 2.
    assert sorted(r.version for r in results.values()) == [2, 3]
    assert sorted(r.attempts for r in results.values()) == [1, 2]
    pointer = client.pointers.get("acme", "thirdPartyId")
    assert pointer.version == 3 and pointer.ids == 400
    assert client.diff(csv_of(a_rows)).sent_ids == []
    assert client.diff(csv_of(b_rows)).sent_ids == []
    assert client.diff(csv_of({i: rows[i] for i in ids[300:]})).sent_ids == []
    # Every version's files are its own: nothing was overwritten.
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="delta/")["Contents"]]
    assert len(keys) == len(set(keys)) and all(Path(k).name.startswith("part-") for k in keys)
