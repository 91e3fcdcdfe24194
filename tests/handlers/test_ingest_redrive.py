"""The ingest of a re-drive file: linked both ways, rows taken as sent (no second column mapping)."""

from __future__ import annotations

import pytest

from tests.handlers.test_ingest import job_record, read
from tests.handlers.test_ingest_profiles import SALESFORCE, SALESFORCE_PROFILE, drop
from tests.handlers.test_ingest_profiles import ingest as ingest  # noqa: PLC0414 - the fixture


def _redrive_body(stack, job: dict) -> bytes:
    """What profile_sync.redrive writes: the batch file's rows as sent, without `batch=`."""
    return read(stack, f"jobs/{job['jobId']}/batches/batch-00001.txt").removeprefix(b"batch=")


def test_a_redrive_of_a_mapped_file_is_linked_and_not_mapped_again(stack, ingest, lambda_context):
    stack.put_profile("acme-eu", SALESFORCE_PROFILE)
    parent = drop(stack, ingest, lambda_context, "incoming/acme-eu/contacts.csv", SALESFORCE)
    body = _redrive_body(stack, parent)
    key = f"incoming/acme-eu/redrive={parent['jobId']}/api=v2/mode=encoded/contacts.redrive-failed.csv"
    child = drop(stack, ingest, lambda_context, key, body, sequencer="0002")

    assert child["status"] == "QUEUED", child.get("reason")
    assert child["parentJobId"] == parent["jobId"]
    assert child["profileVersion"] == 1  # the profile's settings applied, its mapping did not
    assert (child["accepted"], child["rejected"]) == (parent["accepted"], 0)
    assert read(stack, f"jobs/{child['jobId']}/batches/batch-00001.txt") == b"batch=" + body
    linked = job_record(stack, parent["jobId"])
    assert (linked["redrivenBy"], int(linked["redriveCount"])) == ([child["jobId"]], 1)


def test_every_redrive_of_a_job_is_listed_and_a_redrive_of_a_redrive_links_to_its_own_parent(
    stack, ingest, lambda_context
):
    parent = drop(stack, ingest, lambda_context, "incoming/acme/v.csv", b"thirdPartyId,a\nCRM-1,x\nCRM-2,y\n")
    body = _redrive_body(stack, parent)
    first = drop(
        stack, ingest, lambda_context, f"incoming/acme/redrive={parent['jobId']}/a.csv", body, "0002"
    )
    second = drop(
        stack, ingest, lambda_context, f"incoming/acme/redrive={parent['jobId']}/b.csv", body, "0003"
    )
    again = drop(stack, ingest, lambda_context, f"incoming/acme/redrive={first['jobId']}/c.csv", body, "0004")
    assert job_record(stack, parent["jobId"])["redrivenBy"] == [first["jobId"], second["jobId"]]
    assert job_record(stack, first["jobId"])["redrivenBy"] == [again["jobId"]]
    assert again["parentJobId"] == first["jobId"]


def test_a_redrive_of_a_job_no_longer_kept_still_runs(stack, ingest, lambda_context):
    job = drop(
        stack,
        ingest,
        lambda_context,
        "incoming/acme/redrive=20261101T000000Z-0123456789ab/x.csv",
        b"thirdPartyId,a\nCRM-1,x\n",
    )
    assert (job["status"], job["parentJobId"]) == ("QUEUED", "20261101T000000Z-0123456789ab")


@pytest.mark.parametrize("folder", ["redrive=", "redrive=a.b", "redrive=-x"])
def test_a_redrive_folder_without_a_job_id_rejects_the_drop(stack, ingest, lambda_context, folder):
    job = drop(stack, ingest, lambda_context, f"incoming/acme/{folder}/x.csv", b"thirdPartyId,a\nCRM-1,x\n")
    assert job["status"] == "REJECTED" and "not a job id" in job["reason"]
