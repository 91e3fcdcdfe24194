"""Client profiles through the whole pipeline: one stack, several Target clients, each with its own
token, quota and calls per minute, or sharing one account's budget."""

from __future__ import annotations

import json

import boto3
import pytest

from profile_sync.aws.jobs import plain
from profile_sync_local.stack.aws_server import REGION
from profile_sync_local.stack.project import ROOT

SAMPLES = ROOT / "local" / "samples"
SECRETS = "profile-sync/clients/"


def secret(name: str, token: str) -> str:
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=SECRETS + name, SecretString=json.dumps({"profile_token": token})
    )
    return SECRETS + name


def quota_items(pipeline, key: str) -> dict[str, dict]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(pipeline.stack.jobs_table)
    items = table.query(
        KeyConditionExpression=boto3.dynamodb.conditions.Key("pk").eq(f"QUOTA#{key}"), ConsistentRead=True
    )["Items"]
    return {item["sk"]: plain(item) for item in items}


def rate_windows(pipeline) -> set[str]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(pipeline.stack.jobs_table)
    return {item["pk"] for item in table.scan()["Items"] if item["pk"].startswith("RATE#")}


@pytest.fixture
def two_clients(pipeline):
    """Target requires each client's own token; the stack's token is none of them."""
    pipeline.emulator.configure(
        require_auth=True,
        valid_tokens=set(),
        client_tokens=(("acme-eu", "token-of-eu"), ("acme-us", "token-of-us")),
    )
    pipeline.setting(batch_max_rows=2, client_profiles_max_age_seconds=0)
    eu = json.loads((SAMPLES / "salesforce_contacts_eu.profile.json").read_text())
    pipeline.stack.put_profile(
        "acme-eu",
        eu
        | {
            "token_secret_id": secret("acme-eu", "token-of-eu"),
            "daily_row_quota": 1000,
            "calls_per_minute": 40,
        },
    )
    pipeline.stack.put_profile(
        "acme-us",
        {"token_secret_id": secret("acme-us", "token-of-us"), "daily_row_quota": 4, "calls_per_minute": 20},
    )
    return pipeline


def test_two_clients_in_one_run_each_with_its_own_token_quota_and_budget(two_clients):
    pipeline = two_clients
    eu_job = pipeline.ingest((SAMPLES / "salesforce_contacts_eu.csv").read_bytes(), client="acme-eu")
    us_rows = b"thirdPartyId,tier\n" + b"".join(b"US-%d,gold\n" % i for i in range(6))
    us_job = pipeline.ingest(us_rows, client="acme-us")
    from profile_sync_local.stack.workflow import run_workflow  # noqa: PLC0415

    for job in (eu_job, us_job):
        run_workflow(pipeline.execution_input(job), clock=pipeline.clock)
    eu, us = pipeline.job(eu_job["jobId"]), pipeline.job(us_job["jobId"])

    assert eu["status"] == "COMPLETE_WITH_ERRORS"  # the sample's two damaged rows
    assert (eu["profileVersion"], eu["succeeded"], eu["rejected"], eu["skipped"]) == (1, 5, 2, 1)
    assert us["status"] == "COMPLETE" and us["succeeded"] == 6
    assert us["profileVersion"] == 1

    # Each client's calls carried its own token, never the other's, never none.
    calls = [r for r in pipeline.emulator.requests if r["endpoint"] in ("batchUpdate", "batchStatus")]
    assert {r["client"] for r in calls} == {"acme-eu", "acme-us"}
    for request in calls:
        assert request["token_of"] == request["client"], request
        assert request["status"] == 200, request

    # acme-us's quota of 4 rows a day: its third batch waited for the next UTC day; acme-eu's did not.
    us_days = quota_items(pipeline, "acme-us")
    assert [day["used"] for _, day in sorted(us_days.items())] == [4, 2]
    assert [day["used"] for day in quota_items(pipeline, "acme-eu").values()] == [5]
    assert any(
        "acme-us" in m.get("Message", "") or "waits" in m.get("Subject", "") for m in pipeline.messages()
    )
    assert {w.split("#")[1] for w in rate_windows(pipeline)} == {"acme-eu", "acme-us"}


def test_clients_naming_one_account_share_its_daily_rows(pipeline):
    pipeline.setting(batch_max_rows=3, client_profiles_max_age_seconds=0)
    for client in ("brand-a", "brand-b"):
        pipeline.stack.put_profile(client, {"account": "agency", "daily_row_quota": 4})
    rows = b"thirdPartyId,tier\n" + b"".join(b"ID-%d,gold\n" % i for i in range(3))
    first = pipeline.run(rows, client="brand-a")
    second = pipeline.run(rows, client="brand-b")

    assert first.job["status"] == second.job["status"] == "COMPLETE"
    # 3 rows for brand-a; brand-b's 3 did not fit the agency's 4 that day and waited.
    days = quota_items(pipeline, "agency")
    assert [day["used"] for _, day in sorted(days.items())] == [3, 3]
    assert quota_items(pipeline, "brand-a") == quota_items(pipeline, "brand-b") == {}
    assert second.batches[0]["quotaWaitSeconds"] > 0
    assert {w.split("#")[1] for w in rate_windows(pipeline)} == {"agency"}


def test_a_client_without_a_profile_beside_one_with_a_profile_keeps_the_stack_defaults(pipeline):
    pipeline.setting(client_profiles_max_age_seconds=0, daily_row_quota=100)
    pipeline.stack.put_profile("other", {"daily_row_quota": 1, "account": "elsewhere"})
    run = pipeline.run((SAMPLES / "visitors.csv").read_bytes(), client="acme")
    assert run.job["status"] == "COMPLETE_WITH_ERRORS"
    assert "profileVersion" not in run.job
    assert [day["used"] for day in quota_items(pipeline, "acme").values()] == [run.job["accepted"]]
    assert {w.split("#")[1] for w in rate_windows(pipeline)} == {"acme"}


def test_a_profile_quota_retried_after_midnight_is_not_counted_again_with_the_stacks_quota_off(pipeline):
    from profile_sync.aws import ports as aws_ports  # noqa: PLC0415
    from profile_sync.workflow import quota as quota_step  # noqa: PLC0415

    pipeline.setting(daily_row_quota=0, client_profiles_max_age_seconds=0)
    pipeline.stack.put_profile("brand-a", {"account": "agency", "daily_row_quota": 100})
    job = pipeline.ingest(b"pcId,a\n1,x\n2,y\n", client="brand-a")
    item = {
        "jobId": job["jobId"],
        "clientCode": "brand-a",
        "batch": {"batchIndex": 1, "rows": 2, "key": f"jobs/{job['jobId']}/batches/batch-00001.txt"},
    }
    aws_ports.clear()
    ports = aws_ports.quota_ports()
    assert quota_step.reserve_quota(ports, item)["granted"]
    pipeline.clock.advance(24 * 3600)
    again = quota_step.reserve_quota(ports, item)
    assert again["granted"] and again["window"] == "2026-11-28"
    assert list(quota_items(pipeline, "agency")) == ["2026-11-28"]
