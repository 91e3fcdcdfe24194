"""Re-drives through the real ASL, handlers, moto and the Target emulator on one virtual clock:
the automatic re-drive of pending rows (REDRIVE_PENDING_AUTO), once, linked both ways."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import boto3

from profile_sync.aws.delta import DynamoSnapshotPointers
from profile_sync.aws.jobs import DynamoJobStore
from profile_sync.aws.s3 import S3ObjectStore
from profile_sync.delta.snapshot import read_lines
from profile_sync.job_rows import JobFiles
from profile_sync.redrive import build_redrive_file, redrive_key
from profile_sync_local.stack.aws_server import REGION
from profile_sync_local.stack.workflow import run_workflow
from tests.workflow.conftest import CLIENT
from tests.workflow.test_scenarios import assert_accounted, visitor_id, visitors


def follow_drop(pipeline, key: str):
    """What EventBridge does in the stack: the object's event reaches the ingest, whose job runs."""
    pipeline.drops += 1
    at = datetime.fromtimestamp(pipeline.clock.now(), UTC)
    job = pipeline.stack.deliver(key, at=at, sequencer=f"{pipeline.drops:018X}")
    run_workflow(pipeline.execution_input(job), clock=pipeline.clock)
    return pipeline.job(job["jobId"])


def test_pending_rows_are_re_driven_once_by_themselves_and_land(pipeline):
    pipeline.setting(batch_max_rows=5, redrive_pending_auto=1, poll_initial_delay_seconds=5)
    # The second batch Target takes loses its status (its rows end pending); Target is fine after.
    pipeline.emulator.configure(vanish_batches=1, stuck_batches=0)
    body = visitors(20)
    parent = pipeline.run(body).job
    counts = assert_accounted(pipeline, parent)
    assert counts["pending"] == 5 and counts["succeeded"] == 15, counts
    key = parent["autoRedriveKey"]
    assert (
        key == f"incoming/{CLIENT}/redrive={parent['jobId']}/api=v2/mode=encoded/visitors.redrive-pending.csv"
    )
    assert parent["autoRedrive"] == {"key": key, "rows": 5, "batches": 1, "notes": []}
    assert pipeline.summary(parent)["autoRedrive"]["key"] == key
    [message] = [m for m in pipeline.messages() if parent["jobId"] in m["Subject"]]
    assert (
        f"Automatic re-drive: 5 pending rows dropped as s3://{pipeline.stack.bucket}/{key}"
        in message["Message"]
    )
    assert visitor_id(1)[:4] not in message["Message"]  # counts and keys, never an id
    # The file holds the pending rows exactly as they were sent.
    pending_ids = [row["id"] for row in pipeline.report_rows(parent) if row["outcome"] == "pending"]
    lines = pipeline.read(key).decode().splitlines()
    assert (
        lines[0] == "thirdPartyId,tier,value,city"
        and [line.split(",")[0] for line in lines[1:]] == pending_ids
    )
    assert all(line in body.decode().splitlines() for line in lines[1:])

    child = follow_drop(pipeline, key)
    assert child["parentJobId"] == parent["jobId"] and child["autoRedriveOf"] == parent["jobId"]
    assert pipeline.job(parent["jobId"])["redrivenBy"] == [child["jobId"]]
    assert child["status"] == "COMPLETE" and child["received"] == child["succeeded"] == 5
    assert "autoRedrive" not in child and "autoRedriveKey" not in child
    for visitor in pending_ids:
        assert pipeline.emulator.store.get(CLIENT, "thirdPartyId", visitor) is not None


def test_a_re_drive_that_ends_pending_again_is_not_re_driven_again(pipeline):
    pipeline.setting(batch_max_rows=5, redrive_pending_auto=1, poll_initial_delay_seconds=5)
    # Target loses the status of every batch: the automatic re-drive ends pending too.
    pipeline.emulator.configure(vanish_share=1.0)
    parent = pipeline.run(visitors(7)).job
    assert parent["pending"] == 7
    child = follow_drop(pipeline, parent["autoRedriveKey"])
    assert child["status"] == "COMPLETE_WITH_ERRORS" and child["pending"] == 7
    assert child["autoRedriveOf"] == parent["jobId"] and "autoRedriveKey" not in child
    assert "autoRedrive" not in pipeline.summary(child)
    assert redrive_drops(pipeline) == [parent["autoRedriveKey"]]  # one re-drive file in all


def test_off_by_default(pipeline):
    pipeline.setting(batch_max_rows=5, poll_initial_delay_seconds=5)
    pipeline.emulator.configure(vanish_share=1.0)
    job = pipeline.run(visitors(3)).job
    assert job["pending"] == 3 and "autoRedriveKey" not in job and "autoRedrive" not in job
    assert not redrive_drops(pipeline)


def redrive_drops(pipeline) -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    listed = s3.list_objects_v2(Bucket=pipeline.stack.bucket, Prefix=f"incoming/{CLIENT}/redrive=")
    return [obj["Key"] for obj in listed.get("Contents", [])]


# ------------------------------------------------------------------ a re-drive of a delta sync job
HEADER = b"thirdPartyId,tier,city\n"


def delta_rows(n: int, changed: range = range(0), tier: bytes = b"silver") -> bytes:
    lines = [b"CRM-%04d,%s,Berlin\n" % (i, tier if i in changed else b"gold") for i in range(n)]
    return HEADER + b"".join(lines)


def redrive_by_hand(pipeline, job: dict, only=("pending",)) -> dict:
    """What `profile-sync redrive JOB --only pending` drops (built from the job's files in S3), and the
    job its S3 event starts, run to the end."""
    store = DynamoJobStore(pipeline.stack.jobs_table)
    objects = S3ObjectStore(pipeline.stack.bucket)
    out = io.BytesIO()
    built = build_redrive_file(JobFiles(objects, job, store.list_batches(job["jobId"])), only, out)
    key = redrive_key(job, only, built.api_version)
    at = datetime.fromtimestamp(pipeline.clock.now(), UTC)
    pipeline.drops += 1
    child = pipeline.stack.drop(key, out.getvalue(), at=at, sequencer=f"{pipeline.drops:018X}")
    run_workflow(pipeline.execution_input(child), clock=pipeline.clock)
    return pipeline.job(child["jobId"])


def snapshot_hashes(pipeline) -> dict[bytes, bytes]:
    """id -> row hash, from every file the current snapshot pointer names."""
    pointer = DynamoSnapshotPointers(pipeline.stack.jobs_table).get(CLIENT, "thirdPartyId")
    held = {}
    for key in pointer.keys.values():
        _, lines = read_lines(io.BytesIO(pipeline.read(key)))
        held.update({line.split(b"\t")[0]: line.split(b"\t")[1] for line in lines})
    return held


def test_a_delta_jobs_re_drive_sends_its_pending_rows_and_they_enter_the_snapshot(pipeline):
    # A short grace period: each merge below deletes the files the merge before it replaced.
    pipeline.setting(batch_max_rows=5, poll_initial_delay_seconds=5, delta_cleanup_grace_seconds=1)
    first = pipeline.run(delta_rows(20), folders="delta=on/").job
    assert first["succeeded"] == 20 and first["batchCount"] == 4
    # Day 2: 10 rows changed, in 2 batches; the first of them loses its status (the 5th batch Target
    # takes: job 1 sent 4).
    pipeline.emulator.configure(vanish_batches=5)
    day2 = delta_rows(20, changed=range(10))
    second = pipeline.run(day2, folders="delta=on/").job
    assert (second["unchanged"], second["succeeded"], second["pending"]) == (10, 5, 5)
    assert second["deltaUpdate"]["confirmed"] == 5  # pending rows never enter the snapshot
    pending = [row["id"].encode() for row in pipeline.report_rows(second) if row["outcome"] == "pending"]
    before = snapshot_hashes(pipeline)

    child = redrive_by_hand(pipeline, second)
    assert child["sourceKey"].split("/")[5] == "delta=on" and child["delta"] == "on"
    # The pending rows still differ from the snapshot (it holds day 1's values): all sent, none
    # counted unchanged, and Target confirmed them.
    assert (child["received"], child["unchanged"], child["succeeded"], child["status"]) == (
        5,
        0,
        5,
        "COMPLETE",
    )
    sent = [
        line.split(b",")[0]
        for b in pipeline.batches(child["jobId"])
        for line in pipeline.read(b["key"]).splitlines()[1:]
    ]
    assert sorted(sent) == sorted(pending)
    assert child["deltaUpdate"]["confirmed"] == 5
    after = snapshot_hashes(pipeline)
    assert sorted(ident for ident in after if after[ident] != before[ident]) == sorted(pending)
    for ident in pending:
        assert pipeline.emulator.store.get(CLIENT, "thirdPartyId", ident.decode())["tier"] == "silver"
    # The snapshot now holds day 2 whole: the same file again sends nothing.
    again = pipeline.run(day2, folders="delta=on/").job
    assert (again["unchanged"], again["batchCount"], again["status"]) == (20, 0, "COMPLETE")
    # Old files: the re-drive's merge deleted (through S3) what job 2's merge had replaced; what is
    # left is the current version's files and those replaced less than the grace period ago.
    assert child["deltaUpdate"]["deleted"] >= 1
    pointer = DynamoSnapshotPointers(pipeline.stack.jobs_table).get(CLIENT, "thirdPartyId")
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket=pipeline.stack.bucket, Prefix="delta/"
    )
    left = {obj["Key"] for obj in listed["Contents"]}
    assert left == set(pointer.keys.values()) | {key for r in pointer.retired for key in r.files()}


def test_rows_another_job_confirmed_since_are_unchanged_in_the_re_drive_and_not_sent(pipeline):
    pipeline.setting(batch_max_rows=5, poll_initial_delay_seconds=5)
    pipeline.run(delta_rows(10), folders="delta=on/")  # 2 batches
    pipeline.emulator.configure(vanish_batches=3)  # the 3rd batch Target takes: day 2's only one
    day2 = delta_rows(10, changed=range(5))
    second = pipeline.run(day2, folders="delta=on/").job
    assert second["pending"] == 5
    # The next export (the same values) is sent before anyone re-drives: it confirms those rows.
    third = pipeline.run(day2, folders="delta=on/").job
    assert (third["unchanged"], third["succeeded"]) == (5, 5)
    posted = sum(pipeline.emulator.posted_batches().values())
    child = redrive_by_hand(pipeline, second)
    # Target holds these values already: the re-drive counts them unchanged and sends nothing.
    assert (child["received"], child["unchanged"], child["batchCount"], child["status"]) == (
        5,
        5,
        0,
        "COMPLETE",
    )
    assert sum(pipeline.emulator.posted_batches().values()) == posted
