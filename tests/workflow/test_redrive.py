"""Re-drives through the real ASL, handlers, moto and the Target emulator on one virtual clock:
the automatic re-drive of pending rows (REDRIVE_PENDING_AUTO), once, linked both ways."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3

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
