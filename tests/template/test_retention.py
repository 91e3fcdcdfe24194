"""Personal data kept no longer than needed: source files, job files and job records all expire.

The drop under incoming/ holds every row as sent; jobs/<jobId>/ holds batch files (rows), rejects,
results and the report (ids); the JobsTable's job and batch records hold counts, reasons and keys.
"""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest

from profile_sync import clock
from profile_sync.aws import ports
from profile_sync.aws.jobs import DAY_SECONDS, TTL_ATTRIBUTE, DynamoJobStore
from profile_sync.settings import Settings
from profile_sync_local.stack.project import template
from tests.conftest import REGION
from tests.template import sam

DROP_TIME = datetime(2026, 11, 28, 9, 15, 2, tzinfo=UTC)
SAMPLE = b"thirdPartyId,loyaltyTier\nCRM-1,gold\nCRM-2,silver\n"


def _rules(resources: dict) -> dict[str, dict]:
    rules = resources["DropBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    return {rule.get("Prefix", ""): rule for rule in rules if rule["Status"] == "Enabled"}


def test_source_files_and_job_files_expire_by_their_parameters() -> None:
    defaults = _rules(sam.resolved())
    assert defaults["incoming/"]["ExpirationInDays"] == "7"
    assert defaults["jobs/"]["ExpirationInDays"] == "30"
    chosen = _rules(sam.resolved({"SourceRetentionDays": "2", "JobRetentionDays": "14"}))
    assert chosen["incoming/"]["ExpirationInDays"] == "2"
    assert chosen["jobs/"]["ExpirationInDays"] == "14"
    # Every object the stack writes is under one of the two prefixes.
    assert set(defaults) >= {"incoming/", "jobs/"}


def test_job_records_expire_with_the_job_files() -> None:
    """One Parameter for both, so a job's record never outlives its report or the other way round."""
    resources = template()["Resources"]
    ttl = resources["JobsTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    jobs_rule = _rules(resources)["jobs/"]
    assert jobs_rule["ExpirationInDays"] == {"Ref": "JobRetentionDays"}
    variables = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["JOB_RETENTION_DAYS"] == {"Ref": "JobRetentionDays"}
    assert int(template()["Parameters"]["JobRetentionDays"]["Default"]) == Settings().job_retention_days


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [DROP_TIME.timestamp()]
    monkeypatch.setattr(clock, "time", lambda: now[0])
    return now


def _raw(stack, job_id: str, sk: str) -> dict:
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.jobs_table)
    return table.get_item(Key={"pk": f"JOB#{job_id}", "sk": sk})["Item"]


def test_every_write_sets_the_expiry_from_now(stack, fixed_clock) -> None:
    store = DynamoJobStore(stack.jobs_table, retention_days=5)
    start = int(fixed_clock[0])
    assert store.create_job({"jobId": "j1", "createdAt": DROP_TIME.isoformat(), "status": "RECEIVED"})
    store.put_batches("j1", [{"batchIndex": 1, "rows": 2, "key": "jobs/j1/batches/batch-00001.txt"}])
    assert _raw(stack, "j1", "JOB")[TTL_ATTRIBUTE] == start + 5 * DAY_SECONDS
    assert _raw(stack, "j1", "BATCH#00001")[TTL_ATTRIBUTE] == start + 5 * DAY_SECONDS
    # A later change (the job finishing a day later) keeps the record 5 days from then.
    fixed_clock[0] += DAY_SECONDS
    store.update_job("j1", {"status": "COMPLETE"})
    assert store.update_batch("j1", 1, {"status": "COMPLETE"}, expect={"status": "PENDING"})
    assert _raw(stack, "j1", "JOB")[TTL_ATTRIBUTE] == start + 6 * DAY_SECONDS
    assert _raw(stack, "j1", "BATCH#00001")[TTL_ATTRIBUTE] == start + 6 * DAY_SECONDS
    # A refused conditional update changes nothing, the expiry included.
    fixed_clock[0] += DAY_SECONDS
    assert not store.update_batch("j1", 1, {"status": "X"}, expect={"status": "PENDING"})
    assert _raw(stack, "j1", "BATCH#00001")[TTL_ATTRIBUTE] == start + 6 * DAY_SECONDS
    # Readers see the job, not the storage attribute.
    assert TTL_ATTRIBUTE not in store.get_job("j1")
    assert all(TTL_ATTRIBUTE not in b for b in store.list_batches("j1"))


def test_a_reader_without_retention_writes_no_expiry(stack) -> None:
    store = DynamoJobStore(stack.jobs_table)
    store.create_job({"jobId": "j2", "createdAt": DROP_TIME.isoformat()})
    assert TTL_ATTRIBUTE not in _raw(stack, "j2", "JOB")


def test_the_functions_write_the_expiry_of_their_setting(stack, fixed_clock, monkeypatch) -> None:
    """The ingest (job and batches) and the workflow steps' ports, from JOB_RETENTION_DAYS."""
    monkeypatch.setenv("JOB_RETENTION_DAYS", "3")
    result = stack.drop("incoming/acme/visitors.csv", SAMPLE, at=DROP_TIME)
    job_id = result["jobId"]
    expires = int(fixed_clock[0]) + 3 * DAY_SECONDS
    assert _raw(stack, job_id, "JOB")[TTL_ATTRIBUTE] == expires
    assert _raw(stack, job_id, "BATCH#00001")[TTL_ATTRIBUTE] == expires
    ports.clear()
    try:
        assert ports.report_ports().jobs.retention_days == 3
    finally:
        ports.clear()
